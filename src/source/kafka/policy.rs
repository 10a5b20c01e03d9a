//! Which of a job's topics are compacted (`cleanup.policy` holding `compact`): there a
//! roll-back cannot write again the records superseded since their export, whose offsets the
//! broker still holds (see `task::roll_backs::refuse_compacted`).

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;

/// The longest wait for the topics' settings.
const WAIT: Duration = Duration::from_secs(10);

/// The settings of `cfg` (a consumer's) an admin client takes: not the consumer's own.
pub(super) fn admin_config(cfg: &ClientConfig) -> ClientConfig {
    let mut own = ClientConfig::new();
    for (k, v) in cfg.config_map() {
        if !crate::config::consumer_only(k) {
            own.set(k, v);
        }
    }
    own
}

/// Those of `topics` whose cleanup policy compacts, with the policy; and why the others'
/// policies are not known, where some are not (no answer, or an error for a topic).
pub(super) fn compacted(
    cfg: &ClientConfig,
    topics: &[String],
) -> (Vec<(String, String)>, Option<String>) {
    if topics.is_empty() {
        return (Vec::new(), None);
    }
    let admin: AdminClient<DefaultClientContext> = match cfg.create() {
        Ok(a) => a,
        Err(e) => {
            return (
                Vec::new(),
                Some(format!("cannot create an admin client: {e}")),
            )
        }
    };
    let opts = AdminOptions::new().request_timeout(Some(WAIT));
    let asked: Vec<ResourceSpecifier> =
        topics.iter().map(|t| ResourceSpecifier::Topic(t)).collect();
    let answers = match futures::executor::block_on(admin.describe_configs(&asked, &opts)) {
        Ok(a) => a,
        Err(e) => return (Vec::new(), Some(e.to_string())),
    };
    let mut out = Vec::new();
    let mut unknown = Vec::new();
    // In the order asked (librdkafka answers so); topics past a short answer are unknown.
    for (i, topic) in topics.iter().enumerate() {
        let policy = match answers.get(i) {
            Some(Ok(config)) => config.get("cleanup.policy").and_then(|e| e.value.clone()),
            Some(Err(code)) => {
                unknown.push(format!("{topic}: {code}"));
                continue;
            }
            None => None,
        };
        match policy {
            Some(p) if p.split(',').any(|p| p.trim() == "compact") => out.push((topic.clone(), p)),
            Some(_) => {}
            None => unknown.push(format!("{topic}: no cleanup.policy in the answer")),
        }
    }
    let unknown = (!unknown.is_empty()).then(|| unknown.join("; "));
    (out, unknown)
}
