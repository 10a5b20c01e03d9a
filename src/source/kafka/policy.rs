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
        if !crate::config::consumer_only(k) && !k.starts_with("enable.auto") {
            own.set(k, v);
        }
    }
    own
}

/// Those of `topics` whose cleanup policy compacts, with the policy; `Err` with why when the
/// brokers do not tell (no answer, or not for every topic).
pub(super) fn compacted(
    cfg: &ClientConfig,
    topics: &[String],
) -> Result<Vec<(String, String)>, String> {
    if topics.is_empty() {
        return Ok(Vec::new());
    }
    let admin: AdminClient<DefaultClientContext> = cfg
        .create()
        .map_err(|e| format!("cannot create an admin client: {e}"))?;
    let opts = AdminOptions::new().request_timeout(Some(WAIT));
    let asked: Vec<ResourceSpecifier> =
        topics.iter().map(|t| ResourceSpecifier::Topic(t)).collect();
    let answers = futures::executor::block_on(admin.describe_configs(&asked, &opts))
        .map_err(|e| e.to_string())?;
    if answers.len() != topics.len() {
        return Err(format!(
            "the brokers answered for {} of {} topics",
            answers.len(),
            topics.len()
        ));
    }
    let mut out = Vec::new();
    for (topic, answer) in topics.iter().zip(answers) {
        let config = answer.map_err(|code| format!("topic {topic}: {code}"))?;
        let policy = config
            .get("cleanup.policy")
            .and_then(|e| e.value.clone())
            .ok_or_else(|| format!("topic {topic}: no cleanup.policy in the answer"))?;
        if policy.split(',').any(|p| p.trim() == "compact") {
            out.push((topic.clone(), policy));
        }
    }
    Ok(out)
}
