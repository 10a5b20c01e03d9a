//! Which of a job's topics are compacted (`cleanup.policy` holding `compact`): there a
//! roll-back cannot write again the records superseded since their export, whose offsets the
//! broker still holds (see `task::roll_backs::refuse_compacted`).

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::BaseConsumer;

use super::topics::{patterns, topics_now};
use super::{err_at, SourceError};
use crate::config::PassThrough;

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

/// Topics whose cleanup policy compacts, with the policy; and why the others' policies are
/// not known, where some are not.
pub type Compacted = (Vec<(String, String)>, Option<String>);

/// Which of a job's `topics` (names and `^` patterns, as its source reads them from `brokers`
/// with `options`) are compacted, and why some policies are not known (see [`compacted`]),
/// asked without the job's source and without joining its group: a member joining and
/// leaving a live group makes every member give up its partitions (on some brokers the group
/// was left without a leader for good). For `run --from-checkpoint --dry-run`, which must
/// change nothing.
pub fn compacted_topics(
    brokers: &str,
    topics: &[String],
    options: &PassThrough,
) -> Result<Compacted, SourceError> {
    let name = format!("kafka {} ({brokers})", topics.join(","));
    let patterns = patterns(&name, topics)?;
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", brokers);
    for (k, v) in options.iter() {
        cfg.set(k, v);
    }
    // No `group.id`: this consumer only reads the topics' metadata, and cannot join a group.
    cfg.remove("group.id");
    let consumer: BaseConsumer = cfg
        .create()
        .map_err(|e| err_at(&name, format!("cannot create the consumer: {e}")))?;
    let matched: Vec<String> = topics_now(&consumer, &name, topics, &patterns)?
        .into_iter()
        .map(|(t, _)| t)
        .collect();
    Ok(compacted(&admin_config(&cfg), &matched))
}

/// Those of `topics` whose cleanup policy compacts, with the policy; and why the others'
/// policies are not known, where some are not (no answer, or an error for a topic).
pub(super) fn compacted(cfg: &ClientConfig, topics: &[String]) -> Compacted {
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
