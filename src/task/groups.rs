//! The Kafka consumer group each repo of a process runs in now. A job file's repos are
//! checked not to share a group when it is read, but a reload takes one repo's part of the
//! file at a time: a repo removed from the file, or whose own reload was refused, runs on with
//! its old settings. A reload giving its group to another repo would put both in one group,
//! where the assignor splits the partitions between two jobs' checkpoints: each resumes from
//! its own, exporting again what the other wrote. Such a reload is refused.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::config::Job;

/// Per repo, the consumer group of the job its task runs (shared by the process's repos).
#[derive(Debug, Clone, Default)]
pub struct Groups(Arc<Mutex<BTreeMap<String, String>>>);

impl Groups {
    fn map(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, String>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Repo `repo` runs `job` now.
    pub fn running(&self, repo: &str, job: &Job) {
        let mut map = self.map();
        match job.kafka_group() {
            Some(g) => map.insert(repo.to_string(), g),
            None => map.remove(repo),
        };
    }

    /// Repo `repo` runs nothing any more.
    pub fn ended(&self, repo: &str) {
        self.map().remove(repo);
    }

    /// Why repo `repo` may not run `job`, if another repo runs in its group.
    pub fn refuse(&self, repo: &str, job: &Job) -> Result<(), String> {
        let Some(g) = job.kafka_group() else {
            return Ok(());
        };
        match self.map().iter().find(|(r, h)| r.as_str() != repo && **h == g) {
            Some((other, _)) => Err(format!(
                "source.group `{g}` is the group repo {other} runs in now (with the settings it last took: a repo removed from the file, or refused a reload, runs on as it was): two repos in one group would split its partitions between two jobs' checkpoints. Stop repo {other} first (`POST /v1/tasks/{other}/stop`), or restart the process"
            )),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kafka_job(group: &str) -> Job {
        let text = format!(
            "[job]\nname = \"j\"\n[source]\nkind = \"kafka\"\nbrokers = \"127.0.0.1:9\"\ntopics = [\"t\"]\ngroup = \"{group}\"\n[repo]\nschema = \"schemas/nginx_access.toml\"\n[sink]\nurl = \"out/\"\n"
        );
        Job::parse(&text, std::path::Path::new("/etc/sluice/j.toml")).unwrap()
    }

    #[test]
    fn a_repo_may_not_take_a_group_another_runs_in() {
        let groups = Groups::default();
        groups.running("a", &kafka_job("g-orders"));
        groups.running("b", &kafka_job("g-audit"));
        let e = groups.refuse("b", &kafka_job("g-orders")).unwrap_err();
        assert!(e.contains("repo a runs in now"), "{e}");
        // Its own group, and one no other repo runs in, are fine.
        groups.refuse("b", &kafka_job("g-audit")).unwrap();
        groups.refuse("a", &kafka_job("g-orders")).unwrap();
        groups.refuse("b", &kafka_job("g-new")).unwrap();
        groups.ended("a");
        groups.refuse("b", &kafka_job("g-orders")).unwrap();
    }
}
