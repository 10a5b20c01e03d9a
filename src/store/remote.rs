//! Object stores behind destination URLs: `s3://`, `az://` / `abfs[s]://`, `gs://` and `hdfs://`
//! become an [`ObjectStore`] and the prefix path inside it.
//!
//! Settings come from the provider's usual environment variables (`AWS_*`, `AZURE_*`,
//! `GOOGLE_*`), then from [`StoreOptions`], which override them. HDFS calls are bounded by a
//! timeout, since the HDFS client waits indefinitely for a NameNode that does not answer.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey, S3CopyIfNotExists};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::path::Path;
use object_store::{ClientConfigKey, ObjectStore};

pub use super::timeout::TimeoutStore;
use super::StoreError;

/// How long one HDFS call may take unless `request_timeout_secs` says otherwise.
pub const DEFAULT_HDFS_TIMEOUT: Duration = Duration::from_secs(30);

/// The account name and key every Azure Storage emulator (Azurite) accepts.
const EMULATOR_ACCOUNT: &str = "devstoreaccount1";
const EMULATOR_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// Connection settings for an object store destination. Every field is optional; a field that
/// does not apply to the URL's scheme is an error rather than silently ignored.
#[derive(Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreOptions {
    /// S3: a custom endpoint such as `http://127.0.0.1:8333`. Azure: the blob service URL of
    /// the account (`http://127.0.0.1:10000/devstoreaccount1` for Azurite). GCS: the base URL.
    pub endpoint: Option<String>,
    /// S3 region; `us-east-1` when neither this nor `AWS_REGION` is set.
    pub region: Option<String>,
    /// S3 access key id.
    pub access_key_id: Option<String>,
    /// S3 secret access key (secret).
    pub secret_access_key: Option<String>,
    /// S3 session token (secret).
    pub session_token: Option<String>,
    /// Allow plain `http://` endpoints (S3, Azure, GCS).
    pub allow_http: Option<bool>,
    /// S3: `https://bucket.host/` requests instead of `https://host/bucket/` (the default).
    pub virtual_hosted_style: Option<bool>,
    /// Azure storage account name.
    pub account: Option<String>,
    /// Azure storage account key (secret).
    pub access_key: Option<String>,
    /// Azure: talk to the local emulator (Azurite) with its well-known account and key.
    pub use_emulator: Option<bool>,
    /// GCS: path of a service account JSON file.
    pub service_account_path: Option<String>,
    /// Seconds to wait for a connection (S3, Azure, GCS).
    pub connect_timeout_secs: Option<u64>,
    /// Seconds one request may take (S3, Azure, GCS: per HTTP request; HDFS: per call,
    /// default 30).
    pub request_timeout_secs: Option<u64>,
    /// Seconds a request is retried for before its error is reported (S3, Azure, GCS;
    /// default 180). A destination that is down fails a task's start after this long.
    pub retry_timeout_secs: Option<u64>,
    /// Retries of one request (S3, Azure, GCS; default 10).
    pub max_retries: Option<usize>,
    /// Further settings passed to the store's builder as configuration keys (for example
    /// `aws_conditional_put`, `azure_storage_sas_key`, `proxy_url`; for HDFS, Hadoop settings
    /// such as `dfs.ha.namenodes.ns`).
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

/// True for `options` keys whose values must not be shown.
pub(crate) fn secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    ["secret", "key", "token", "password", "sas", "credential"]
        .iter()
        .any(|s| k.contains(s))
}

impl fmt::Debug for StoreOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hide = |v: &Option<String>| v.as_ref().map(|_| "***");
        let options: BTreeMap<&str, &str> = self
            .options
            .iter()
            .map(|(k, v)| (k.as_str(), if secret_key(k) { "***" } else { v.as_str() }))
            .collect();
        f.debug_struct("StoreOptions")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &hide(&self.secret_access_key))
            .field("session_token", &hide(&self.session_token))
            .field("allow_http", &self.allow_http)
            .field("virtual_hosted_style", &self.virtual_hosted_style)
            .field("account", &self.account)
            .field("access_key", &hide(&self.access_key))
            .field("use_emulator", &self.use_emulator)
            .field("service_account_path", &self.service_account_path)
            .field("connect_timeout_secs", &self.connect_timeout_secs)
            .field("request_timeout_secs", &self.request_timeout_secs)
            .field("retry_timeout_secs", &self.retry_timeout_secs)
            .field("max_retries", &self.max_retries)
            .field("options", &options)
            .finish()
    }
}

impl StoreOptions {
    /// Every secret value, to scrub from messages.
    fn secrets(&self) -> Vec<&str> {
        let mut out: Vec<&str> = [
            &self.secret_access_key,
            &self.session_token,
            &self.access_key,
        ]
        .into_iter()
        .flatten()
        .map(String::as_str)
        .collect();
        out.extend(
            self.options
                .iter()
                .filter(|(k, _)| secret_key(k))
                .map(|(_, v)| v.as_str()),
        );
        out.retain(|s| !s.is_empty());
        out
    }

    /// Names of the fields that are set but do not apply to `scheme` (one of s3, azure, gcs,
    /// hdfs).
    fn misplaced(&self, scheme: &str) -> Vec<&'static str> {
        let set = [
            ("endpoint", self.endpoint.is_some(), "s3 azure gcs"),
            ("region", self.region.is_some(), "s3"),
            ("access_key_id", self.access_key_id.is_some(), "s3"),
            ("secret_access_key", self.secret_access_key.is_some(), "s3"),
            ("session_token", self.session_token.is_some(), "s3"),
            ("allow_http", self.allow_http.is_some(), "s3 azure gcs"),
            (
                "virtual_hosted_style",
                self.virtual_hosted_style.is_some(),
                "s3",
            ),
            ("account", self.account.is_some(), "azure"),
            ("access_key", self.access_key.is_some(), "azure"),
            ("use_emulator", self.use_emulator.is_some(), "azure"),
            (
                "service_account_path",
                self.service_account_path.is_some(),
                "gcs",
            ),
            (
                "connect_timeout_secs",
                self.connect_timeout_secs.is_some(),
                "s3 azure gcs",
            ),
            (
                "retry_timeout_secs",
                self.retry_timeout_secs.is_some(),
                "s3 azure gcs",
            ),
            ("max_retries", self.max_retries.is_some(), "s3 azure gcs"),
        ];
        set.iter()
            .filter(|(_, is_set, applies)| *is_set && !applies.split(' ').any(|a| a == scheme))
            .map(|(name, _, _)| *name)
            .collect()
    }
}

/// Builds the store for `url` and returns it with the path prefix the URL names inside it.
pub fn open_store(
    url: &url::Url,
    opts: &StoreOptions,
) -> Result<(Arc<dyn ObjectStore>, Path), StoreError> {
    let shown = redacted(url);
    let fail = |reason: String| StoreError::Url {
        url: shown.clone(),
        reason: scrub(reason, opts),
    };
    let kind = match url.scheme() {
        "s3" | "s3a" => "s3",
        "az" | "abfs" | "abfss" => "azure",
        "gs" => "gcs",
        "hdfs" => "hdfs",
        other => {
            return Err(fail(format!(
                "scheme `{other}` is not supported (supported: s3://, az://, abfs://, abfss://, \
                 gs://, hdfs://, file://, memory://, or a local path)"
            )))
        }
    };
    if url.password().is_some() {
        return Err(fail(
            "credentials in the URL are not accepted; pass them as options".into(),
        ));
    }
    let misplaced = opts.misplaced(kind);
    if !misplaced.is_empty() {
        return Err(fail(format!(
            "option(s) {} do not apply to {} URLs",
            misplaced.join(", "),
            url.scheme()
        )));
    }
    let prefix = Path::from_url_path(url.path().trim_matches('/'))
        .map_err(|e| fail(format!("invalid path: {e}")))?;
    let store: Arc<dyn ObjectStore> = match kind {
        "s3" => Arc::new(s3(url, opts).map_err(fail)?),
        "azure" => Arc::new(azure(url, opts).map_err(fail)?),
        "gcs" => Arc::new(gcs(url, opts).map_err(fail)?),
        _ => Arc::new(hdfs(url, opts, &shown).map_err(fail)?),
    };
    Ok((store, prefix))
}

/// The URL for messages, without any password.
fn redacted(url: &url::Url) -> String {
    let mut u = url.clone();
    if u.password().is_some() {
        let _ = u.set_password(Some("***"));
    }
    u.to_string()
}

/// Replaces every secret value in `msg` with `***`.
fn scrub(mut msg: String, opts: &StoreOptions) -> String {
    for s in opts.secrets() {
        msg = msg.replace(s, "***");
    }
    msg
}

/// The host part of the URL, or an error naming what the scheme needs there.
fn host<'a>(url: &'a url::Url, what: &str, example: &str) -> Result<&'a str, String> {
    match url.host_str() {
        Some(h) if !h.is_empty() => Ok(h),
        _ => Err(format!(
            "{} URL needs a {what} ({}://{example}/path)",
            url.scheme(),
            url.scheme()
        )),
    }
}

fn secs(n: u64) -> String {
    format!("{n}s")
}

/// object_store's retries with the options' bounds.
fn retry(opts: &StoreOptions) -> object_store::RetryConfig {
    let mut r = object_store::RetryConfig::default();
    if let Some(n) = opts.max_retries {
        r.max_retries = n;
    }
    if let Some(n) = opts.retry_timeout_secs {
        r.retry_timeout = Duration::from_secs(n);
    }
    r
}

fn s3(url: &url::Url, opts: &StoreOptions) -> Result<object_store::aws::AmazonS3, String> {
    let bucket = host(url, "bucket", "bucket")?;
    let mut b = AmazonS3Builder::from_env();
    for (k, v) in &opts.options {
        let key: AmazonS3ConfigKey = k
            .parse()
            .map_err(|_| format!("`{k}` is not an S3 setting"))?;
        b = b.with_config(key, v);
    }
    b = b.with_bucket_name(bucket);
    if let Some(v) = &opts.endpoint {
        b = b.with_endpoint(v);
    }
    if let Some(v) = &opts.region {
        b = b.with_region(v);
    } else if b.get_config_value(&AmazonS3ConfigKey::Region).is_none() {
        b = b.with_region("us-east-1");
    }
    if let Some(v) = &opts.access_key_id {
        b = b.with_access_key_id(v);
    }
    if let Some(v) = &opts.secret_access_key {
        b = b.with_secret_access_key(v);
    }
    if let Some(v) = &opts.session_token {
        b = b.with_token(v);
    }
    if let Some(v) = opts.allow_http {
        b = b.with_allow_http(v);
    }
    if let Some(v) = opts.virtual_hosted_style {
        b = b.with_virtual_hosted_style_request(v);
    }
    if let Some(n) = opts.connect_timeout_secs {
        b = b.with_config(
            AmazonS3ConfigKey::Client(ClientConfigKey::ConnectTimeout),
            secs(n),
        );
    }
    if let Some(n) = opts.request_timeout_secs {
        b = b.with_config(AmazonS3ConfigKey::Client(ClientConfigKey::Timeout), secs(n));
    }
    // Create-only puts (the commit protocol's records, the Delta log) use `If-None-Match: *`
    // (object_store's default `etag` conditional put). Create-only copies, which sluice does
    // not make but a library handed this store may, go through a multipart upload with a
    // conditional completion, which works on S3 and S3-compatible servers alike.
    if b.get_config_value(&AmazonS3ConfigKey::CopyIfNotExists)
        .is_none()
    {
        b = b.with_copy_if_not_exists(S3CopyIfNotExists::Multipart);
    }
    b.with_retry(retry(opts))
        .build()
        .map_err(|e| format!("cannot set up the S3 client: {e}"))
}

fn azure(
    url: &url::Url,
    opts: &StoreOptions,
) -> Result<object_store::azure::MicrosoftAzure, String> {
    let h = host(url, "container", "container")?;
    // az://container/path, abfs[s]://container/path, or the Hadoop form
    // abfs[s]://container@account.dfs.core.windows.net/path.
    let (container, url_account) = if url.username().is_empty() {
        if h.contains('.') {
            return Err(format!(
                "{} URL needs a container name as its host, or container@account.dfs.core.\
                 windows.net",
                url.scheme()
            ));
        }
        (h.to_string(), None)
    } else {
        match h.split_once('.') {
            Some((account, "dfs.core.windows.net" | "blob.core.windows.net")) => {
                (url.username().to_string(), Some(account.to_string()))
            }
            _ => {
                return Err(format!(
                    "{} URL with a user part needs container@account.dfs.core.windows.net",
                    url.scheme()
                ))
            }
        }
    };
    let account = match (&url_account, &opts.account) {
        (Some(a), Some(o)) if a != o => {
            return Err(format!(
                "the URL names account `{a}` but the account option is `{o}`"
            ))
        }
        (Some(a), _) => Some(a.clone()),
        (None, o) => o.clone(),
    };
    let mut b = MicrosoftAzureBuilder::from_env();
    for (k, v) in &opts.options {
        let key: AzureConfigKey = k
            .parse()
            .map_err(|_| format!("`{k}` is not an Azure setting"))?;
        b = b.with_config(key, v);
    }
    b = b.with_container_name(container);
    let emulator = opts.use_emulator.unwrap_or(false);
    match (&opts.endpoint, emulator) {
        (Some(endpoint), _) => {
            b = b.with_endpoint(endpoint.clone());
            if emulator {
                // The emulator at a given address: its well-known account and key unless set.
                b = b
                    .with_account(account.as_deref().unwrap_or(EMULATOR_ACCOUNT))
                    .with_allow_http(true);
                if opts.access_key.is_none() {
                    b = b.with_access_key(EMULATOR_KEY);
                }
            } else if let Some(a) = &account {
                b = b.with_account(a);
            }
        }
        (None, true) => {
            b = b.with_use_emulator(true);
            if let Some(a) = &account {
                b = b.with_account(a);
            }
        }
        (None, false) => {
            if let Some(a) = &account {
                b = b.with_account(a);
            }
        }
    }
    if let Some(v) = &opts.access_key {
        b = b.with_access_key(v);
    }
    if let Some(v) = opts.allow_http {
        b = b.with_allow_http(v);
    }
    if let Some(n) = opts.connect_timeout_secs {
        b = b.with_config(
            AzureConfigKey::Client(ClientConfigKey::ConnectTimeout),
            secs(n),
        );
    }
    if let Some(n) = opts.request_timeout_secs {
        b = b.with_config(AzureConfigKey::Client(ClientConfigKey::Timeout), secs(n));
    }
    b.with_retry(retry(opts))
        .build()
        .map_err(|e| format!("cannot set up the Azure client: {e}"))
}

fn gcs(
    url: &url::Url,
    opts: &StoreOptions,
) -> Result<object_store::gcp::GoogleCloudStorage, String> {
    let bucket = host(url, "bucket", "bucket")?;
    let mut b = GoogleCloudStorageBuilder::from_env();
    for (k, v) in &opts.options {
        let key: GoogleConfigKey = k
            .parse()
            .map_err(|_| format!("`{k}` is not a GCS setting"))?;
        b = b.with_config(key, v);
    }
    b = b.with_bucket_name(bucket);
    if let Some(v) = &opts.endpoint {
        b = b.with_base_url(v);
    }
    if let Some(v) = &opts.service_account_path {
        b = b.with_service_account_path(v);
    }
    if let Some(v) = opts.allow_http {
        b = b.with_config(
            GoogleConfigKey::Client(ClientConfigKey::AllowHttp),
            v.to_string(),
        );
    }
    if let Some(n) = opts.connect_timeout_secs {
        b = b.with_config(
            GoogleConfigKey::Client(ClientConfigKey::ConnectTimeout),
            secs(n),
        );
    }
    if let Some(n) = opts.request_timeout_secs {
        b = b.with_config(GoogleConfigKey::Client(ClientConfigKey::Timeout), secs(n));
    }
    b.with_retry(retry(opts))
        .build()
        .map_err(|e| format!("cannot set up the GCS client: {e}"))
}

fn hdfs(url: &url::Url, opts: &StoreOptions, shown: &str) -> Result<TimeoutStore, String> {
    let h = host(url, "NameNode host", "namenode:port")?;
    let namenode = match url.port() {
        Some(p) => format!("hdfs://{h}:{p}"),
        None => format!("hdfs://{h}"),
    };
    let store = hdfs_native_object_store::HdfsObjectStoreBuilder::new()
        .with_url(namenode)
        .with_config(opts.options.clone())
        .build()
        .map_err(|e| format!("cannot set up the HDFS client: {e}"))?;
    let limit = opts
        .request_timeout_secs
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_HDFS_TIMEOUT);
    Ok(TimeoutStore::new(Arc::new(store), limit, "HDFS", shown))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_secrets() {
        let opts = StoreOptions {
            access_key_id: Some("AKIDVISIBLE".into()),
            secret_access_key: Some("s3-secret-value".into()),
            session_token: Some("session-token-value".into()),
            access_key: Some("azure-key-value".into()),
            options: BTreeMap::from([
                ("aws_secret_access_key".into(), "opt-secret-value".into()),
                ("proxy_url".into(), "http://proxy:3128".into()),
            ]),
            ..Default::default()
        };
        let shown = format!("{opts:?}");
        for secret in [
            "s3-secret-value",
            "session-token-value",
            "azure-key-value",
            "opt-secret-value",
        ] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("AKIDVISIBLE"), "{shown}");
        assert!(shown.contains("http://proxy:3128"), "{shown}");
        assert!(shown.contains("***"), "{shown}");
    }

    #[test]
    fn options_deserialize_and_reject_unknown_fields() {
        let opts: StoreOptions = toml::from_str(
            "endpoint = 'http://127.0.0.1:8333'\nallow_http = true\n[options]\nproxy_url = 'x'\n",
        )
        .unwrap();
        assert_eq!(opts.endpoint.as_deref(), Some("http://127.0.0.1:8333"));
        assert_eq!(opts.options["proxy_url"], "x");
        let e = toml::from_str::<StoreOptions>("secret = 'x'\n").unwrap_err();
        assert!(e.to_string().contains("secret"), "{e}");
    }

    #[test]
    fn scrub_removes_secrets_from_messages() {
        let opts = StoreOptions {
            access_key: Some("abc+def".into()),
            ..Default::default()
        };
        assert_eq!(
            scrub("bad key abc+def here".into(), &opts),
            "bad key *** here"
        );
    }
}
