//! The Kafka consumer group each repo of a process runs in now. A job file's repos are
//! checked not to share a group when it is read, but a reload takes one repo's part of the
//! file at a time: a repo removed from the file, or whose own reload was refused, runs on with
//! its old settings. A reload giving its group to another repo would put both in one group,
//! where the assignor splits the partitions between two jobs' checkpoints: each resumes from
//! its own, exporting again what the other wrote. Such a reload is refused: a check that
//! passes holds the new group from then (two repos' checks cannot both take one), and a
//! reloaded job that fails goes back to the previous one only if its group is still free.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use crate::config::Job;

/// Per repo, the consumer groups it holds: the one of the job its task runs, and the one of
/// a job a reload check passed and not yet started (shared by the process's repos).
#[derive(Debug, Clone, Default)]
pub struct Groups(Arc<Mutex<BTreeMap<String, BTreeSet<String>>>>);

impl Groups {
    fn map(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, BTreeSet<String>>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Repo `repo` runs `job` now: it holds that job's group alone.
    pub fn running(&self, repo: &str, job: &Job) {
        let mut map = self.map();
        match job.kafka_group() {
            Some(g) => map.insert(repo.to_string(), BTreeSet::from([g])),
            None => map.remove(repo),
        };
    }

    /// Repo `repo` runs nothing any more.
    pub fn ended(&self, repo: &str) {
        self.map().remove(repo);
    }

    /// Holds `job`'s group for repo `repo` too (a reload that passed, or a job to go back
    /// to), unless another repo holds it: then why not. Checked and held in one step, so two
    /// repos' checks cannot both take one group.
    pub fn reserve(&self, repo: &str, job: &Job) -> Result<(), String> {
        let Some(g) = job.kafka_group() else {
            return Ok(());
        };
        let mut map = self.map();
        if let Some((other, _)) = map
            .iter()
            .find(|(r, held)| r.as_str() != repo && held.contains(&g))
        {
            return Err(format!(
                "source.group `{g}` is the group repo {other} runs in now, or is about to (a repo removed from the file, or refused a reload, runs on as it was): two repos in one group would split its partitions between two jobs' checkpoints. Stop repo {other} first (`POST /v1/tasks/{other}/stop`), or restart the process"
            ));
        }
        map.entry(repo.to_string()).or_default().insert(g);
        Ok(())
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
    fn a_repo_may_not_take_a_group_another_runs_in_or_is_about_to() {
        let groups = Groups::default();
        groups.running("a", &kafka_job("g-orders"));
        groups.running("b", &kafka_job("g-audit"));
        let e = groups.reserve("b", &kafka_job("g-orders")).unwrap_err();
        assert!(e.contains("repo a runs in now"), "{e}");
        // Its own group, and one no other repo holds, are fine.
        groups.reserve("b", &kafka_job("g-audit")).unwrap();
        groups.reserve("a", &kafka_job("g-orders")).unwrap();
        groups.reserve("b", &kafka_job("g-new")).unwrap();
        // Held by b until b runs another job: a's check cannot take it meanwhile.
        groups.reserve("a", &kafka_job("g-new")).unwrap_err();
        groups.running("b", &kafka_job("g-audit"));
        groups.reserve("a", &kafka_job("g-new")).unwrap();
        groups.ended("a");
        groups.reserve("b", &kafka_job("g-orders")).unwrap();
    }
}
