//! The commit protocol over a store whose listings lag behind its writes (a file system's
//! cached folder on NFS, a store whose listings are eventually consistent): what decides is
//! read by name.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};

use super::checkpoint::Checkpoints;
use super::tests::{checkpoint, claim, KEY};
use crate::store::Destination;

/// A store whose listings leave out the names in `unlisted` (reads by name find them).
#[derive(Debug, Default)]
struct Lagging {
    inner: InMemory,
    unlisted: Mutex<HashSet<String>>,
}

impl Lagging {
    fn listed(&self, m: &ObjectMeta) -> bool {
        !self.unlisted.lock().unwrap().contains(m.location.as_ref())
    }
}

impl std::fmt::Display for Lagging {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Lagging")
    }
}

#[async_trait::async_trait]
impl ObjectStore for Lagging {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }
    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }
    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.inner.get_opts(location, options).await
    }
    fn delete_stream(
        &self,
        locations: futures::stream::BoxStream<'static, Result<Path>>,
    ) -> futures::stream::BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }
    fn list(
        &self,
        prefix: Option<&Path>,
    ) -> futures::stream::BoxStream<'static, Result<ObjectMeta>> {
        use futures::TryStreamExt;
        let hidden = self.unlisted.lock().unwrap().clone();
        Box::pin(
            self.inner
                .list(prefix)
                .try_filter(move |m| std::future::ready(!hidden.contains(m.location.as_ref()))),
        )
    }
    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let mut l = self.inner.list_with_delimiter(prefix).await?;
        l.objects.retain(|m| self.listed(m));
        Ok(l)
    }
    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: object_store::CopyOptions,
    ) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

/// A lagging store, its checkpoints of job `j`, and the term owner `a` took (reconciled).
fn owned_by_a() -> (
    tokio::runtime::Runtime,
    Arc<Lagging>,
    Destination,
    Checkpoints,
    u64,
) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let store = Arc::new(Lagging::default());
    let dest = Destination::from_store("test://lag/", store.clone(), "p", rt.handle().clone());
    let cps = Checkpoints::new(dest.clone(), "j");
    let t = cps.take_term(KEY, "a").unwrap();
    cps.reconcile(KEY, t, "a").unwrap();
    (rt, store, dest, cps, t)
}

/// Owner `a` seals commit 1 (records up to 10) and is paused before its release; `b` takes
/// the partition over while the outcome is not listed yet. `b` resumes after commit 1 and
/// takes sequence number 2. Before, `b` resumed at the start (the commit passed over), and its
/// commit 2 wrote records 0..10 again; with nothing listed at all, it took number 1 too.
#[test]
fn an_outcome_the_listing_lacks_is_read_by_name() {
    let (_rt, store, dest, cps, t) = owned_by_a();
    let c = claim(1, t, "a", &[], &[]);
    cps.claim(&c).unwrap();
    cps.seal(&c, &checkpoint(&c, 10)).unwrap();
    let outcome = dest.list("_sluice/j/checkpoints/").unwrap();
    assert_eq!(outcome.len(), 1, "{outcome:?}");
    let unlisted = |names: &[String]| {
        let mut u = store.unlisted.lock().unwrap();
        u.extend(names.iter().map(|n| format!("p/{n}")));
    };
    unlisted(&outcome);
    let t2 = cps.take_term(KEY, "b").unwrap();
    let r = cps.reconcile(KEY, t2, "b").unwrap();
    assert_eq!(
        (r.latest.map(|l| l.next_offset), r.next_seq),
        (Some(10), 2),
        "the claim listed, its outcome not"
    );
    // Neither the claim (released) nor the outcome listed: read above what is known.
    let claims: Vec<String> = dest
        .list("_sluice/j/fence/")
        .unwrap()
        .into_iter()
        .filter(|n| n.contains("/claim-"))
        .collect();
    unlisted(&claims);
    let t3 = cps.take_term(KEY, "c").unwrap();
    let r = cps.reconcile(KEY, t3, "c").unwrap();
    assert_eq!((r.latest.map(|l| l.next_offset), r.next_seq), (Some(10), 2));
}

/// A roll-back while the newest commit is not listed yet undoes it too: its files are in the
/// undo claim, and it no longer stands. Before reads by name reached the history, the undo
/// list came from the listing: the commit's files stayed visible, and the partition replayed
/// its records after the target again (twice for a reader).
#[test]
fn a_roll_back_undoes_a_commit_the_listing_lacks() {
    let (_rt, store, dest, cps, t) = owned_by_a();
    for seq in 1..=2u64 {
        let rel = format!("d/{seq}.txt");
        dest.put_atomic(&rel, b"x", false).unwrap();
        let c = claim(seq, t, "a", &[], &[rel.as_str()]);
        cps.claim(&c).unwrap();
        cps.seal(&c, &checkpoint(&c, seq * 10)).unwrap();
        cps.release(KEY, seq, t, "a").unwrap();
    }
    store
        .unlisted
        .lock()
        .unwrap()
        .insert("p/_sluice/j/checkpoints/t-0/000000000002.json".into());
    assert_eq!(cps.history(KEY).unwrap().len(), 2, "read by name");
    let t2 = cps.take_term(KEY, "b").unwrap();
    let r = cps.roll_back_to(KEY, 1, t2, "b").unwrap();
    assert_eq!(r.latest.map(|c| (c.seq, c.next_offset)), Some((1, 10)));
    assert!(!dest.exists("d/2.txt").unwrap(), "commit 2's file removed");
    assert!(dest.exists("d/1.txt").unwrap());
}
