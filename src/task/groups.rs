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

/// What one repo holds.
#[derive(Debug, Default)]
struct Held {
    /// The group of the job its task runs.
    running: Option<String>,
    /// Groups of jobs a reload check passed, not started yet (kept until one runs, or the
    /// repo ends: a check carried across a restart keeps its group).
    reserved: BTreeSet<String>,
    /// Its supervisor returned: it runs nothing again in this process.
    ended: bool,
}

impl Held {
    fn holds(&self, g: &str) -> bool {
        self.running.as_deref() == Some(g) || self.reserved.contains(g)
    }
}

/// Per repo, the consumer groups it holds (shared by the process's repos).
#[derive(Debug, Clone, Default)]
pub struct Groups(Arc<Mutex<BTreeMap<String, Held>>>);

impl Groups {
    fn map(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Held>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Repo `repo` runs `job` now: that job's group is the one it runs in (a reservation of
    /// it is taken up; others stay).
    pub fn running(&self, repo: &str, job: &Job) {
        let mut map = self.map();
        let held = map.entry(repo.to_string()).or_default();
        let g = job.kafka_group();
        if let Some(g) = &g {
            held.reserved.remove(g);
        }
        held.running = g;
    }

    /// Repo `repo` runs nothing any more: what it held is free, and a check still under way
    /// holds nothing for it.
    pub fn ended(&self, repo: &str) {
        let mut map = self.map();
        let held = map.entry(repo.to_string()).or_default();
        *held = Held {
            ended: true,
            ..Held::default()
        };
    }

    /// Holds `job`'s group for repo `repo` too (a reload that passed, or a job to go back
    /// to), unless another repo holds it, or `repo` has ended: then why not. Checked and
    /// held in one step, so two repos' checks cannot both take one group.
    pub fn reserve(&self, repo: &str, job: &Job) -> Result<(), String> {
        let Some(g) = job.kafka_group() else {
            return Ok(());
        };
        let mut map = self.map();
        if map.get(repo).is_some_and(|h| h.ended) {
            return Err(format!(
                "repo {repo} has stopped: it runs nothing again in this process"
            ));
        }
        if let Some((other, _)) = map
            .iter()
            .find(|(r, held)| r.as_str() != repo && held.holds(&g))
        {
            return Err(format!(
                "source.group `{g}` is the group repo {other} runs in now, or is about to (a repo removed from the file, or refused a reload, runs on as it was): two repos in one group would split its partitions between two jobs' checkpoints. Stop repo {other} first (`POST /v1/tasks/{other}/stop`), or restart the process"
            ));
        }
        map.entry(repo.to_string()).or_default().reserved.insert(g);
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
        // Held by b until b runs it, or ends: a's check cannot take it meanwhile, not even
        // while b restarts with its old job (a check carried across the restart).
        groups.reserve("a", &kafka_job("g-new")).unwrap_err();
        groups.running("b", &kafka_job("g-audit"));
        groups.reserve("a", &kafka_job("g-new")).unwrap_err();
        groups.running("b", &kafka_job("g-new"));
        groups.reserve("a", &kafka_job("g-audit")).unwrap();
        groups.ended("a");
        groups.reserve("b", &kafka_job("g-orders")).unwrap();
        // A check finishing after its repo ended holds nothing.
        let e = groups.reserve("a", &kafka_job("g-x")).unwrap_err();
        assert!(e.contains("has stopped"), "{e}");
        groups.reserve("b", &kafka_job("g-x")).unwrap();
    }
}
