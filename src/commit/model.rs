//! A model test of the commit protocol: random interleavings of writers of one partition
//! (stale terms, pauses between any two store calls, crashes, calls that succeed after
//! reporting failure, roll-backs, pruning, and a registration paused inside its settle,
//! between finding a claim without an outcome and writing its abort, while the others act)
//! against a real local destination.

use std::cell::{Cell, RefCell};
use std::io::Write;
use std::rc::Rc;

use proptest::prelude::*;

use super::checkpoint::{CheckpointError, Checkpoints, Outcome};
use super::fence::{Claim, Reconciled};
use super::tests::{checkpoint, claim, setup, KEY};
use crate::store::{Destination, OutputFile};

/// Records 0..N of one partition; each data file holds the offsets it covers, one per line.
const N: u64 = 24;

#[derive(Debug)]
enum Phase {
    Written,
    Checked,
    /// The claim is in the store; the term is checked once more before anything is published.
    Put,
    Claimed,
    Published(usize),
    Sealed,
}

struct Attempt {
    seq: u64,
    to: u64,
    files: Vec<(String, Option<OutputFile>)>,
    claim: Claim,
    phase: Phase,
}

struct Writer {
    owner: String,
    /// None: not running (never started, crashed or fenced); a restart registers again.
    term: Option<u64>,
    seq: u64,
    committed: u64,
    attempt: Option<Attempt>,
    /// A roll-back claimed and not sealed yet, with its target.
    rollback: Option<(Claim, u64)>,
}

struct Model {
    dest: Destination,
    cps: Checkpoints,
    writers: Vec<Writer>,
    tags: u64,
    /// Files of every commit that won its sequence number and was not rolled back (pruning
    /// removes records, not files).
    committed: std::collections::BTreeSet<String>,
}

impl Model {
    fn register(&mut self, w: usize) {
        let owner = self.writers[w].owner.clone();
        // A restart: whatever the writer held is gone (temp files stay on disk).
        self.writers[w].attempt = None;
        self.writers[w].rollback = None;
        let term = self.cps.take_term(KEY, &owner).unwrap();
        let r = self.cps.reconcile(KEY, term, &owner);
        self.registered(w, term, r);
    }

    /// Writer `w`'s registration under `term` reconciled with result `r`.
    fn registered(&mut self, w: usize, term: u64, r: Result<Reconciled, CheckpointError>) {
        match r {
            Ok(r) => {
                let wr = &mut self.writers[w];
                wr.term = Some(term);
                wr.seq = r.next_seq - 1;
                wr.committed = r.latest.map_or(0, |c| c.next_offset);
            }
            Err(e) if e.is_fenced() => self.writers[w].term = None,
            Err(e) => panic!("reconcile: {e}"),
        }
    }

    /// After a failed step: drop the attempt and reconcile (`Worker::fail`).
    fn resync(&mut self, w: usize) {
        if let Some(a) = self.writers[w].attempt.take() {
            for (_, f) in a.files {
                if let Some(f) = f {
                    let _ = f.abort();
                }
            }
        }
        let (owner, Some(term)) = (self.writers[w].owner.clone(), self.writers[w].term) else {
            return;
        };
        match self.cps.reconcile(KEY, term, &owner) {
            Ok(r) => {
                let wr = &mut self.writers[w];
                wr.seq = wr.seq.max(r.next_seq - 1);
                if let Some(c) = r.latest {
                    wr.committed = c.next_offset;
                }
            }
            Err(e) if e.is_fenced() => self.fence(w),
            Err(e) => panic!("reconcile: {e}"),
        }
    }

    /// `run --from-checkpoint`, in its two store steps: claim, then (a later step) seal.
    fn roll_back(&mut self, w: usize, pick: u64) {
        let (owner, Some(term)) = (self.writers[w].owner.clone(), self.writers[w].term) else {
            return;
        };
        if let Some((claim, target)) = self.writers[w].rollback.take() {
            let r = self.cps.roll_back_seal(&claim, target);
            if let Ok(Some(Outcome::Rollback(won))) = self.cps.outcome(KEY, claim.seq) {
                if won.owner == claim.owner && won.term == claim.term {
                    for f in &claim.files {
                        self.committed.remove(f);
                    }
                }
            }
            match r {
                Ok(r) => {
                    let wr = &mut self.writers[w];
                    wr.seq = r.next_seq - 1;
                    wr.committed = r.latest.map_or(0, |c| c.next_offset);
                }
                Err(e) => self.failed(w, e),
            }
            return;
        }
        let history = self.cps.history(KEY).unwrap();
        if history.is_empty() {
            return;
        }
        let target = history[(pick as usize) % history.len()].seq;
        if let Some(a) = self.writers[w].attempt.take() {
            for f in a.files.into_iter().filter_map(|f| f.1) {
                let _ = f.abort();
            }
        }
        match self.cps.roll_back_claim(KEY, target, term, &owner) {
            Ok(claim) => self.writers[w].rollback = Some((claim, target)),
            Err(CheckpointError::Unknown { .. }) => {}
            Err(e) => self.failed(w, e),
        }
    }

    fn fence(&mut self, w: usize) {
        self.writers[w].rollback = None;
        if let Some(a) = self.writers[w].attempt.take() {
            for f in a.files.into_iter().filter_map(|f| f.1) {
                let _ = f.abort();
            }
        }
        self.writers[w].term = None;
    }

    fn failed(&mut self, w: usize, e: CheckpointError) {
        if e.is_fenced() {
            self.fence(w);
        } else if matches!(e, CheckpointError::Taken { .. }) {
            self.resync(w);
        } else {
            panic!("unexpected error: {e}");
        }
    }

    /// One step of writer `w`; `ambiguous`: a claim or seal that lands reports failure.
    fn step(&mut self, w: usize, size: u64, ambiguous: bool) {
        let Some(term) = self.writers[w].term else {
            return;
        };
        let owner = self.writers[w].owner.clone();
        let Some(mut a) = self.writers[w].attempt.take() else {
            let (from, seq) = (self.writers[w].committed, self.writers[w].seq + 1);
            if from >= N {
                return;
            }
            let to = (from + 1 + size % 6).min(N);
            let mid = from + (to - from).div_ceil(2);
            let mut files = Vec::new();
            let mut rels = Vec::new();
            for (lo, hi) in [(from, mid), (mid, to)] {
                if lo == hi {
                    continue;
                }
                self.tags += 1;
                let rel = format!("data/{KEY}-{lo}-{}-{}.txt", w, self.tags);
                let mut f = self.dest.create(&rel).unwrap();
                for o in lo..hi {
                    writeln!(f, "{o}").unwrap();
                }
                rels.push(rel.clone());
                files.push((rel, Some(f)));
            }
            let handles: Vec<&OutputFile> = files.iter().filter_map(|f| f.1.as_ref()).collect();
            let rel_refs: Vec<&str> = rels.iter().map(String::as_str).collect();
            let mut claim = claim(seq, term, &owner, &handles, &rel_refs);
            claim.from_offset = from;
            claim.next_offset = to;
            self.writers[w].attempt = Some(Attempt {
                seq,
                to,
                files,
                claim,
                phase: Phase::Written,
            });
            return;
        };
        match a.phase {
            // The term checks before and after the claim's write.
            Phase::Written | Phase::Put => {
                let r = self.cps.check_term(KEY, term);
                if r.is_ok() {
                    a.phase = match a.phase {
                        Phase::Written => Phase::Checked,
                        _ => Phase::Claimed,
                    };
                }
                self.writers[w].attempt = Some(a);
                if let Err(e) = r {
                    self.failed(w, e)
                }
            }
            Phase::Checked => {
                let r = self.cps.put_claim(&a.claim);
                a.phase = Phase::Put;
                self.writers[w].attempt = Some(a);
                match r {
                    Ok(()) if ambiguous => self.resync(w),
                    Ok(()) => {}
                    Err(e) => self.failed(w, e),
                }
            }
            Phase::Claimed | Phase::Published(_) => {
                let i = match a.phase {
                    Phase::Published(i) => i,
                    _ => 0,
                };
                if i == a.files.len() {
                    let c = checkpoint(&a.claim, a.to);
                    let r = self.cps.seal(&a.claim, &c);
                    // What won is in the store, whatever the call reported.
                    if let Ok(Some(Outcome::Commit(won))) = self.cps.outcome(KEY, a.seq) {
                        if won.owner == a.claim.owner && won.term == a.claim.term {
                            self.committed.extend(a.claim.files.iter().cloned());
                        }
                    }
                    a.phase = Phase::Sealed;
                    let seq = a.seq;
                    self.writers[w].attempt = Some(a);
                    match r {
                        Ok(()) if ambiguous => self.resync(w),
                        Ok(()) => {
                            let wr = &mut self.writers[w];
                            wr.seq = seq;
                            wr.committed = c.next_offset;
                        }
                        Err(e) => self.failed(w, e),
                    }
                    return;
                }
                let f = a.files[i].1.take().expect("published once");
                let r = f.commit();
                a.phase = Phase::Published(i + 1);
                self.writers[w].attempt = Some(a);
                if r.is_err() {
                    // The staged file was deleted by a fence.
                    self.resync(w);
                }
            }
            Phase::Sealed => match self.cps.release(KEY, a.seq, term, &owner) {
                Ok(_) => {}
                Err(e) if e.is_fenced() => self.fence(w),
                Err(e) => panic!("release: {e}"),
            },
        }
    }

    /// Offsets in visible data files: (offset → how many files hold it), and the files.
    fn visible(&self) -> (Vec<u32>, Vec<String>) {
        let mut seen = vec![0u32; N as usize];
        let files = self.dest.list("data/").unwrap();
        for f in &files {
            let text = String::from_utf8(self.dest.read(f).unwrap()).unwrap();
            for line in text.lines() {
                seen[line.parse::<usize>().unwrap()] += 1;
            }
        }
        (seen, files)
    }
}

/// One action of the model: (kind, writer, size).
type Action = (u8, u8, u8);

fn act(m: &mut Model, (kind, who, size): Action) {
    let w = who as usize % 3;
    match kind % 12 {
        0 => m.register(w),
        1 => m.step(w, size as u64, true),
        // Roll-backs are rarer than commits, as in life.
        11 if size % 4 == 0 => m.roll_back(w, size as u64),
        // Pruning down to a few records, by whoever holds a term.
        10 if size % 2 == 0 => {
            if let Some(term) = m.writers[w].term {
                match m.cps.prune(KEY, 3, term) {
                    Ok(()) => {}
                    Err(e) if e.is_fenced() => {}
                    Err(e) => panic!("prune: {e}"),
                }
            }
        }
        _ if m.writers[w].rollback.is_some() => m.roll_back(w, 0),
        _ => m.step(w, size as u64, false),
    }
}

/// At every instant a reader sees each record at most once.
fn at_most_once(m: &Model) {
    let (seen, files) = m.visible();
    assert!(
        seen.iter().all(|n| *n <= 1),
        "a record is visible twice: {seen:?} in {files:?}"
    );
}

/// Writer `w` registers (a restart), and pauses inside its settle where it would abort a
/// claim, while `others` run (its own actions among them are skipped: it is paused). When
/// its settle aborts nothing, they run after it.
fn register_paused(m: &Rc<RefCell<Model>>, w: usize, others: Vec<Action>) {
    let (cps, owner) = {
        let mut mm = m.borrow_mut();
        mm.writers[w].attempt = None;
        mm.writers[w].rollback = None;
        (mm.cps.clone(), mm.writers[w].owner.clone())
    };
    let term = cps.take_term(KEY, &owner).unwrap();
    let ran = Rc::new(Cell::new(false));
    let run = {
        let (m, ran) = (m.clone(), ran.clone());
        move |others: Vec<Action>| {
            ran.set(true);
            for a in others.into_iter().filter(|a| a.1 as usize % 3 != w) {
                let mut mm = m.borrow_mut();
                act(&mut mm, a);
                at_most_once(&mm);
            }
        }
    };
    let inside = {
        let (run, others) = (run.clone(), others.clone());
        move || run(others)
    };
    crate::hooks::set("settle: before an abort", inside);
    let r = cps.reconcile(KEY, term, &owner);
    crate::hooks::clear("settle: before an abort");
    m.borrow_mut().registered(w, term, r);
    if !ran.get() {
        run(others);
    }
}

fn run_model(actions: &[Action]) {
    let (_d, _rt, dest) = setup();
    let cps = Checkpoints::new(dest.clone(), "j");
    let writers = (0..3)
        .map(|i| Writer {
            owner: format!("w{i}"),
            term: None,
            seq: 0,
            committed: 0,
            attempt: None,
            rollback: None,
        })
        .collect();
    let model = Rc::new(RefCell::new(Model {
        dest,
        cps,
        writers,
        tags: 0,
        committed: Default::default(),
    }));
    let mut i = 0;
    while i < actions.len() {
        let (kind, who, size) = actions[i];
        i += 1;
        if kind % 12 == 9 && size % 3 == 0 {
            // A registration paused inside its settle while up to 48 actions run.
            let k = (size as usize / 3) % 48 + 1;
            let others = actions[i..(i + k).min(actions.len())].to_vec();
            i += others.len();
            register_paused(&model, who as usize % 3, others);
        } else {
            act(&mut model.borrow_mut(), (kind, who, size));
        }
        at_most_once(&model.borrow());
    }
    let mut m = model.borrow_mut();
    // Every writer crashes; a fresh one takes over and runs to the end alone.
    for w in 0..3 {
        m.writers[w].attempt = None;
        m.writers[w].rollback = None;
        m.writers[w].term = None;
    }
    m.register(0);
    for _ in 0..10_000 {
        if m.writers[0].committed >= N && m.writers[0].attempt.is_none() {
            break;
        }
        m.step(0, 3, false);
    }
    let (seen, files) = m.visible();
    assert!(
        seen.iter().all(|n| *n == 1),
        "every record exactly once: {seen:?} in {files:?}"
    );
    let committed: Vec<String> = m.committed.iter().cloned().collect();
    assert_eq!(
        files, committed,
        "visible files = files of the commits that won and stand"
    );
    // Records still kept name only visible files.
    for c in m.cps.history(KEY).unwrap() {
        for f in c.files {
            assert!(files.contains(&f.path), "{} is named but gone", f.path);
        }
    }
}

/// A writer checks its term, then pauses before its claim lands; a newer owner registers,
/// commits every record (the stale writer's sequence number among them) and prunes that
/// outcome; the stale claim then lands (nothing decides its sequence number any more). It
/// must not publish: the term is checked again once the claim is in the store.
#[test]
fn a_claim_landing_after_a_newer_owner_pruned_its_sequence_number_publishes_nothing() {
    let mut actions = vec![(0, 0, 0), (2, 0, 5), (2, 0, 5), (0, 1, 0)];
    actions.extend(std::iter::repeat_n((2, 1, 5), 40));
    actions.push((10, 1, 0));
    actions.extend(std::iter::repeat_n((2, 0, 5), 6));
    run_model(&actions);
}

/// A writer publishes, then pauses before its seal; a newer owner aborts its sequence number
/// (removing the files), commits on and prunes. The late seal must lose to the abort: before
/// aborts were kept, it won a pruned name and its commit named files that were gone.
#[test]
fn a_seal_after_its_abort_would_be_pruned_still_loses() {
    let mut actions = vec![(0, 0, 0)];
    actions.extend(std::iter::repeat_n((2, 0, 0), 7));
    actions.extend(std::iter::repeat_n((2, 0, 0), 5));
    actions.push((0, 1, 0));
    actions.extend(std::iter::repeat_n((2, 1, 0), 21));
    actions.push((10, 1, 0));
    actions.push((2, 0, 0));
    run_model(&actions);
}

/// A roll-back is claimed and pauses before its seal; a newer owner aborts it, commits on and
/// prunes. The late roll-back seal must lose: before aborts were kept, it won and undid
/// commits whose files stayed visible.
#[test]
fn a_roll_back_sealed_after_its_abort_would_be_pruned_still_loses() {
    let mut actions = vec![(0, 0, 0)];
    actions.extend(std::iter::repeat_n((2, 0, 0), 14));
    actions.push((11, 0, 0));
    actions.push((0, 1, 0));
    actions.extend(std::iter::repeat_n((2, 1, 0), 21));
    actions.push((10, 1, 0));
    actions.push((2, 0, 0));
    run_model(&actions);
}

/// A writer claims and passes its term checks; another registers and pauses inside its
/// settle, about to abort that claim; meanwhile the claim's commit is sealed, a third writer
/// takes over, commits four more and prunes the first commit's record. The paused abort then
/// finds the name free and wins: it must not delete the standing commit's files (before, it
/// did, and those records were lost for good).
#[test]
fn an_abort_paused_until_its_commit_won_and_was_pruned_removes_nothing() {
    let mut actions = vec![(0, 0, 0)];
    actions.extend(std::iter::repeat_n((2, 0, 5), 4));
    // Writer 1 registers, paused while the next 34 actions run (size 99: k = 33 + 1).
    actions.push((9, 1, 99));
    actions.extend(std::iter::repeat_n((2, 0, 5), 4));
    actions.push((0, 2, 0));
    actions.extend(std::iter::repeat_n((2, 2, 0), 28));
    actions.push((10, 2, 0));
    run_model(&actions);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn writers_interleaved_at_any_store_call_stay_exactly_once(
        actions in proptest::collection::vec((0u8..12, 0u8..3, any::<u8>()), 1..200)
    ) {
        run_model(&actions);
    }
}
