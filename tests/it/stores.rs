//! The same writer checks on every destination kind: memory, a local folder, S3 (SeaweedFS)
//! and Azure Blob (Azurite) from `scripts/services.sh`, and, when pointed at one, real HDFS and
//! GCS. HDFS and GCS also get configuration tests that need no server.

use std::io::Write;
use std::time::{Duration, Instant};

use sluice::store::remote::StoreOptions;
use sluice::store::{Destination, StoreError};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A fresh folder name per run, so reruns against a long-lived server never collide.
fn run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("run-{}-{nanos}", std::process::id())
}

/// The value of `var`, or `None` after printing a `SKIP:` line. With `required_in_ci` (servers
/// that `scripts/services.sh` starts), a missing variable under CI fails the test instead.
fn env_or_skip(var: &str, required_in_ci: bool, what: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ => {
            if required_in_ci && std::env::var_os("CI").is_some() {
                panic!("CI is set but {var} is not: run the tests through scripts/test.sh");
            }
            if required_in_ci {
                eprintln!("SKIP: {what} needs {var} (eval \"$(scripts/services.sh start ...)\")");
            } else {
                eprintln!("SKIP: {what} runs only when {var} names a bucket or folder to use");
            }
            None
        }
    }
}

/// Deterministic bytes that do not compress or repeat.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

fn write_in_pieces(f: &mut sluice::store::OutputFile, data: &[u8]) {
    // Odd piece sizes so part boundaries fall inside writes.
    for piece in data.chunks(1_000_003) {
        f.write_all(piece).unwrap();
    }
}

const BIG: usize = 25 * 1024 * 1024;

/// The writer contract every destination must keep.
fn suite(dest: &Destination) {
    // A multipart file is invisible until commit and whole after it.
    let data = pattern(BIG, 7);
    let mut f = dest.create("big/file.bin").unwrap();
    write_in_pieces(&mut f, &data);
    assert_eq!(f.bytes_written(), BIG as u64);
    assert!(
        !dest.exists("big/file.bin").unwrap(),
        "visible before commit"
    );
    assert!(dest.list("big").unwrap().is_empty(), "listed before commit");
    assert_eq!(f.commit().unwrap(), BIG as u64);
    assert!(dest.exists("big/file.bin").unwrap());
    let back = dest.read("big/file.bin").unwrap();
    assert!(
        back == data,
        "read back {} bytes, differing from the {} written",
        back.len(),
        data.len()
    );
    drop(back);

    // A small file (a single put).
    let mut s = dest.create("small/a.txt").unwrap();
    s.write_all(b"hello, store").unwrap();
    s.commit().unwrap();
    assert_eq!(dest.read("small/a.txt").unwrap(), b"hello, store");

    // Abort after a part was uploaded leaves nothing.
    let mut g = dest.create("aborted/x.bin").unwrap();
    write_in_pieces(&mut g, &pattern(12 * 1024 * 1024, 9));
    g.abort().unwrap();
    assert!(!dest.exists("aborted/x.bin").unwrap());
    assert!(dest.list("aborted").unwrap().is_empty());

    // A parked file offloaded (an item routed to more paths than memory allows) holds
    // nothing in memory and stays invisible; its commit makes it whole, and a create-only
    // commit is refused where a file is.
    for (name, len) in [
        ("parked/small.bin", 300 * 1024),
        ("parked/big.bin", BIG / 2),
    ] {
        let data = pattern(len, 11);
        let mut o = dest.create(name).unwrap();
        write_in_pieces(&mut o, &data);
        o.park().unwrap();
        o.offload().unwrap();
        assert_eq!(o.held_bytes(), 0, "{name} holds memory once offloaded");
        assert!(!dest.exists(name).unwrap(), "{name} visible before commit");
        assert_eq!(o.commit_new().unwrap(), len as u64);
        assert!(dest.read(name).unwrap() == data, "{name} read back differs");
        let mut again = dest.create(name).unwrap();
        again.write_all(b"another").unwrap();
        again.park().unwrap();
        again.offload().unwrap();
        let e = again.commit_new().unwrap_err();
        assert!(matches!(e, StoreError::Exists { .. }), "{e}");
        assert!(dest.read(name).unwrap() == data, "{name} replaced");
        dest.delete(name).unwrap();
    }

    // Create-only records: the second create is refused and the first survives.
    dest.put_atomic("_sluice/rec.json", b"one", true).unwrap();
    let e = dest
        .put_atomic("_sluice/rec.json", b"two", true)
        .unwrap_err();
    assert!(matches!(e, StoreError::Exists { .. }), "{e}");
    assert!(e.to_string().contains("rec.json"), "{e}");
    assert_eq!(dest.read("_sluice/rec.json").unwrap(), b"one");
    dest.put_atomic("_sluice/rec.json", b"three", false)
        .unwrap();
    assert_eq!(dest.read("_sluice/rec.json").unwrap(), b"three");
    dest.put_atomic("_sluice/sub/b.json", b"b", true).unwrap();

    // Listing is recursive, relative and sorted; delete is idempotent.
    assert_eq!(
        dest.list("").unwrap(),
        vec![
            "_sluice/rec.json",
            "_sluice/sub/b.json",
            "big/file.bin",
            "small/a.txt"
        ]
    );
    assert_eq!(
        dest.list("_sluice").unwrap(),
        vec!["_sluice/rec.json", "_sluice/sub/b.json"]
    );
    assert!(dest.list("nothing/here").unwrap().is_empty());
    let missing = dest.read("nothing/here.bin").unwrap_err();
    assert!(
        missing.to_string().contains("nothing/here.bin"),
        "{missing}"
    );
    for rel in dest.list("").unwrap() {
        dest.delete(&rel).unwrap();
    }
    dest.delete("small/a.txt").unwrap();
    assert!(!dest.exists("small/a.txt").unwrap());
    assert!(dest.list("").unwrap().is_empty());
}

#[test]
fn memory_store_keeps_the_writer_contract() {
    let rt = runtime();
    suite(&Destination::parse("memory:///it", rt.handle().clone()).unwrap());
}

#[test]
fn local_folder_keeps_the_writer_contract() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let url = url::Url::from_directory_path(dir.path()).unwrap();
    suite(&Destination::parse(url.as_str(), rt.handle().clone()).unwrap());
}

fn s3_options(secret: &str) -> Option<(String, StoreOptions)> {
    let url = env_or_skip("SLUICE_TEST_S3_URL", true, "the S3 test")?;
    let var = |k: &str| std::env::var(k).ok();
    let opts = StoreOptions {
        endpoint: var("SLUICE_TEST_S3_ENDPOINT"),
        region: var("SLUICE_TEST_S3_REGION"),
        access_key_id: var("SLUICE_TEST_S3_ACCESS_KEY_ID"),
        secret_access_key: Some(secret.to_string()),
        allow_http: Some(true),
        ..Default::default()
    };
    Some((format!("{}/{}", url.trim_end_matches('/'), run_id()), opts))
}

#[test]
fn s3_keeps_the_writer_contract() {
    let secret = std::env::var("SLUICE_TEST_S3_SECRET_ACCESS_KEY").unwrap_or_default();
    let Some((url, opts)) = s3_options(&secret) else {
        return;
    };
    let rt = runtime();
    suite(&Destination::parse_with(&url, &opts, rt.handle().clone()).unwrap());
}

#[test]
fn s3_with_a_wrong_secret_fails_clearly() {
    let wrong = "not-the-secret-0123456789";
    let Some((url, opts)) = s3_options(wrong) else {
        return;
    };
    let rt = runtime();
    let dest = Destination::parse_with(&url, &opts, rt.handle().clone()).unwrap();
    let mut f = dest.create("denied/a.txt").unwrap();
    f.write_all(b"never stored").unwrap();
    let e = f.commit().unwrap_err().to_string();
    assert!(e.contains("denied/a.txt"), "{e}");
    assert!(
        e.contains("403") || e.contains("SignatureDoesNotMatch"),
        "{e}"
    );
    assert!(!e.contains(wrong), "the secret leaked into: {e}");
    let e = dest.put_atomic("denied/r.json", b"{}", true).unwrap_err();
    assert!(matches!(e, StoreError::Store { .. }), "{e}");
    let e = e.to_string();
    assert!(e.contains("denied/r.json") && e.contains("403"), "{e}");
    assert!(!e.contains(wrong), "the secret leaked into: {e}");
}

#[test]
fn s3_create_only_copy_refuses_to_replace() {
    use object_store::ObjectStoreExt;
    let secret = std::env::var("SLUICE_TEST_S3_SECRET_ACCESS_KEY").unwrap_or_default();
    let Some((url, opts)) = s3_options(&secret) else {
        return;
    };
    let (store, prefix) =
        sluice::store::remote::open_store(&url::Url::parse(&url).unwrap(), &opts).unwrap();
    let rt = runtime();
    rt.block_on(async {
        let (a, b) = (prefix.clone().join("a"), prefix.clone().join("b"));
        store.put(&a, b"first".to_vec().into()).await.unwrap();
        store.put(&b, b"second".to_vec().into()).await.unwrap();
        store
            .copy_if_not_exists(&a, &prefix.clone().join("c"))
            .await
            .unwrap();
        let e = store.copy_if_not_exists(&b, &a).await.unwrap_err();
        assert!(
            matches!(e, object_store::Error::AlreadyExists { .. }),
            "{e}"
        );
        let kept = store.get(&a).await.unwrap().bytes().await.unwrap();
        assert_eq!(&kept[..], b"first");
        for name in ["a", "b", "c"] {
            store.delete(&prefix.clone().join(name)).await.unwrap();
        }
    });
}

#[test]
fn convert_writes_to_s3_with_settings_from_the_environment() {
    let secret = std::env::var("SLUICE_TEST_S3_SECRET_ACCESS_KEY").unwrap_or_default();
    let Some((url, opts)) = s3_options(&secret) else {
        return;
    };
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["convert", "--quiet", "--schema"])
        .arg(crate::helpers::schema("nginx_access"))
        .arg("--input")
        .arg(crate::helpers::fixture("nginx_access.jsonl"))
        .args(["--output", &format!("{url}/")])
        .env("AWS_ENDPOINT", opts.endpoint.clone().unwrap_or_default())
        .env("AWS_REGION", opts.region.clone().unwrap_or_default())
        .env(
            "AWS_ACCESS_KEY_ID",
            opts.access_key_id.clone().unwrap_or_default(),
        )
        .env("AWS_SECRET_ACCESS_KEY", &secret)
        .env("AWS_ALLOW_HTTP", "true")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("2000 rows"), "{stdout}");
    let rt = runtime();
    let dest = Destination::parse_with(&url, &opts, rt.handle().clone()).unwrap();
    assert_eq!(dest.list("").unwrap(), vec!["nginx_access.parquet"]);
    let bytes = bytes::Bytes::from(dest.read("nginx_access.parquet").unwrap());
    let reader = parquet::file::reader::SerializedFileReader::new(bytes).unwrap();
    let rows = parquet::file::reader::FileReader::metadata(&reader)
        .file_metadata()
        .num_rows();
    assert_eq!(rows, 2000);
    dest.delete("nginx_access.parquet").unwrap();
}

pub(crate) fn azure_options() -> Option<(String, StoreOptions)> {
    let url = env_or_skip("SLUICE_TEST_AZURE_URL", true, "the Azure test")?;
    let var = |k: &str| std::env::var(k).ok();
    let opts = StoreOptions {
        endpoint: var("SLUICE_TEST_AZURE_ENDPOINT"),
        account: var("SLUICE_TEST_AZURE_ACCOUNT"),
        access_key: var("SLUICE_TEST_AZURE_ACCESS_KEY"),
        allow_http: Some(true),
        ..Default::default()
    };
    Some((format!("{}/{}", url.trim_end_matches('/'), run_id()), opts))
}

#[test]
fn azure_keeps_the_writer_contract() {
    let Some((url, opts)) = azure_options() else {
        return;
    };
    let rt = runtime();
    suite(&Destination::parse_with(&url, &opts, rt.handle().clone()).unwrap());
}

#[test]
fn azure_emulator_option_and_wrong_key() {
    let Some((url, opts)) = azure_options() else {
        return;
    };
    let rt = runtime();
    // `use_emulator` with the endpoint: the emulator's well-known account and key.
    let emulator = StoreOptions {
        endpoint: opts.endpoint.clone(),
        use_emulator: Some(true),
        ..Default::default()
    };
    let dest = Destination::parse_with(&url, &emulator, rt.handle().clone()).unwrap();
    dest.put_atomic("e/one.txt", b"1", true).unwrap();
    assert_eq!(dest.read("e/one.txt").unwrap(), b"1");
    assert!(matches!(
        dest.put_atomic("e/one.txt", b"2", true),
        Err(StoreError::Exists { .. })
    ));
    dest.delete("e/one.txt").unwrap();

    // A well-formed but wrong key is refused by the server, and never shown.
    let wrong_key = "d3JvbmcgYnV0IHdlbGwgZm9ybWVkIGtleQ==";
    let wrong = StoreOptions {
        access_key: Some(wrong_key.into()),
        ..opts
    };
    let dest = Destination::parse_with(&url, &wrong, rt.handle().clone()).unwrap();
    let e = dest
        .put_atomic("e/two.txt", b"2", false)
        .unwrap_err()
        .to_string();
    assert!(e.contains("e/two.txt") && e.contains("403"), "{e}");
    assert!(!e.contains(wrong_key), "the key leaked into: {e}");
}

#[test]
fn hdfs_when_configured() {
    let Some(url) = env_or_skip("SLUICE_TEST_HDFS_URL", false, "the HDFS test") else {
        return;
    };
    let rt = runtime();
    let url = format!("{}/{}", url.trim_end_matches('/'), run_id());
    suite(&Destination::parse(&url, rt.handle().clone()).unwrap());
}

#[test]
fn gcs_when_configured() {
    let Some(url) = env_or_skip("SLUICE_TEST_GCS_URL", false, "the GCS test") else {
        return;
    };
    let opts = StoreOptions {
        service_account_path: std::env::var("SLUICE_TEST_GCS_SERVICE_ACCOUNT_PATH").ok(),
        ..Default::default()
    };
    let rt = runtime();
    let url = format!("{}/{}", url.trim_end_matches('/'), run_id());
    suite(&Destination::parse_with(&url, &opts, rt.handle().clone()).unwrap());
}

/// Parses `url` with `opts`; returns the error text, failing the test if it parsed.
fn parse_error(url: &str, opts: &StoreOptions) -> String {
    let rt = runtime();
    match Destination::parse_with(url, opts, rt.handle().clone()) {
        Ok(_) => panic!("{url} parsed, but should not have"),
        Err(e) => {
            assert!(matches!(e, StoreError::Url { .. }), "{e}");
            e.to_string()
        }
    }
}

#[test]
fn store_urls_and_options_give_clear_errors() {
    let none = StoreOptions::default();
    let e = parse_error("ftp://host/x", &none);
    assert!(
        e.contains("ftp") && e.contains("s3://") && e.contains("hdfs://"),
        "{e}"
    );
    for (url, words) in [
        ("s3:///prefix", "s3 URL needs a bucket"),
        ("gs:///prefix", "gs URL needs a bucket"),
        ("az:///prefix", "az URL needs a container"),
        ("hdfs:///prefix", "hdfs URL needs a NameNode host"),
        (
            "abfss://c@acct.example.com/p",
            "container@account.dfs.core.windows.net",
        ),
    ] {
        let e = parse_error(url, &none);
        assert!(e.contains(url) && e.contains(words), "{url}: {e}");
    }
    let e = parse_error("s3://k:pass@bucket/p", &none);
    assert!(!e.contains("pass@"), "{e}");

    let unknown = StoreOptions {
        options: [("no_such_setting".to_string(), "1".to_string())].into(),
        ..Default::default()
    };
    for url in ["s3://b/p", "az://c/p", "gs://b/p"] {
        let e = parse_error(url, &unknown);
        assert!(e.contains("no_such_setting"), "{url}: {e}");
    }

    let misplaced = StoreOptions {
        region: Some("eu-west-1".into()),
        account: Some("acct".into()),
        ..Default::default()
    };
    let e = parse_error("gs://b/p", &misplaced);
    assert!(e.contains("region") && e.contains("account"), "{e}");

    let mismatch = StoreOptions {
        account: Some("other".into()),
        access_key: Some("a2V5".into()),
        ..Default::default()
    };
    let e = parse_error("abfss://c@acct.dfs.core.windows.net/p", &mismatch);
    assert!(e.contains("acct") && e.contains("other"), "{e}");
    assert!(!e.contains("a2V5"), "{e}");
}

#[test]
fn store_urls_parse_without_a_server() {
    let rt = runtime();
    let s3 = StoreOptions {
        endpoint: Some("http://127.0.0.1:9".into()),
        access_key_id: Some("id".into()),
        secret_access_key: Some("secret".into()),
        allow_http: Some(true),
        options: [("aws_conditional_put".to_string(), "etag".to_string())].into(),
        ..Default::default()
    };
    let d = Destination::parse_with("s3://bucket/a/b/", &s3, rt.handle().clone()).unwrap();
    assert_eq!(d.display("x.parquet"), "s3://bucket/a/b/x.parquet");
    let az = StoreOptions {
        access_key: Some("a2V5".into()),
        ..Default::default()
    };
    for url in [
        "abfss://c@acct.dfs.core.windows.net/p",
        "abfs://c@acct.blob.core.windows.net/p",
    ] {
        Destination::parse_with(url, &az, rt.handle().clone()).unwrap();
    }
    let az = StoreOptions {
        account: Some("acct".into()),
        ..az
    };
    Destination::parse_with("az://c/p", &az, rt.handle().clone()).unwrap();
    let gcs = StoreOptions {
        endpoint: Some("http://127.0.0.1:9".into()),
        ..Default::default()
    };
    let d = Destination::parse_with("gs://bucket/p", &gcs, rt.handle().clone()).unwrap();
    assert_eq!(d.display("x.orc"), "gs://bucket/p/x.orc");
    Destination::parse_with(
        "hdfs://namenode:8020/data",
        &StoreOptions::default(),
        rt.handle().clone(),
    )
    .unwrap();
}

#[test]
fn gcs_service_account_errors_name_the_file() {
    let opts = StoreOptions {
        service_account_path: Some("/nonexistent/sluice-sa.json".into()),
        ..Default::default()
    };
    let e = parse_error("gs://bucket/p", &opts);
    assert!(e.contains("gs://bucket/p") && e.contains("GCS"), "{e}");
    assert!(e.contains("/nonexistent/sluice-sa.json"), "{e}");
}

type Op<'a> = Box<dyn Fn() -> Result<(), StoreError> + 'a>;

/// Each operation on `dest` must fail, naming the URL, well within `limit`.
fn fails_within(dest: &Destination, limit: Duration) {
    let ops: [(&str, Op); 4] = [
        ("exists", Box::new(|| dest.exists("a.bin").map(|_| ()))),
        ("list", Box::new(|| dest.list("").map(|_| ()))),
        ("put", Box::new(|| dest.put_atomic("r.json", b"{}", true))),
        (
            "write",
            Box::new(|| {
                let mut f = dest.create("f.bin")?;
                f.write_all(b"data").map_err(|source| StoreError::Io {
                    path: "f.bin".into(),
                    source,
                })?;
                f.commit().map(|_| ())
            }),
        ),
    ];
    for (name, op) in ops {
        let start = Instant::now();
        let e = op().expect_err(name).to_string();
        let took = start.elapsed();
        assert!(took < limit, "{name} took {took:?}: {e}");
        assert!(e.contains("127.0.0.1"), "{name}: {e}");
    }
}

#[test]
fn hdfs_without_a_namenode_fails_instead_of_hanging() {
    let rt = runtime();
    let opts = StoreOptions {
        request_timeout_secs: Some(2),
        ..Default::default()
    };
    // Nothing listens on port 1.
    let dest = Destination::parse_with("hdfs://127.0.0.1:1/x", &opts, rt.handle().clone()).unwrap();
    fails_within(&dest, Duration::from_secs(15));

    // A server that accepts connections and never answers: only the timeout ends the wait.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = held.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            keep.lock().unwrap().push(conn);
        }
    });
    let url = format!("hdfs://127.0.0.1:{port}/x");
    let dest = Destination::parse_with(&url, &opts, rt.handle().clone()).unwrap();
    let start = Instant::now();
    let e = dest.exists("a.bin").unwrap_err().to_string();
    assert!(start.elapsed() < Duration::from_secs(15), "{e}");
    assert!(
        e.contains(&url) && e.contains("no answer within 2 s"),
        "{e}"
    );
    fails_within(&dest, Duration::from_secs(15));
}
