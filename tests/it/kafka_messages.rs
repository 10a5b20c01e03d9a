//! Kafka messages any producer can send, read without a crash. A header name is a string in
//! the protocol, but nothing checks its bytes: rdkafka's header accessor panicked on a name
//! that is not UTF-8, and since every restart read the same message again, one such message
//! stopped its partition for good. Names are read lossily, as header values are.

use std::ffi::CString;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka_sys as rd;

use crate::helpers::*;
use crate::kafka::{cluster, job_full};

/// Produces one message whose headers are given as raw bytes (rdkafka takes names as `&str`
/// only), through librdkafka's `rd_kafka_produceva`.
fn produce_raw_headers(
    producer: &BaseProducer,
    topic: &str,
    payload: &[u8],
    headers: &[(&[u8], &[u8])],
) {
    use rd::rd_kafka_vtype_t as V;
    use rd::rd_kafka_vu_s__bindgen_ty_1 as U;
    let topic = CString::new(topic).unwrap();
    let names: Vec<CString> = headers
        .iter()
        .map(|(n, _)| CString::new(n.to_vec()).unwrap())
        .collect();
    let mut vus = vec![
        rd::rd_kafka_vu_t {
            vtype: V::RD_KAFKA_VTYPE_TOPIC,
            u: U {
                cstr: topic.as_ptr(),
            },
        },
        rd::rd_kafka_vu_t {
            vtype: V::RD_KAFKA_VTYPE_PARTITION,
            u: U { i32_: 0 },
        },
        rd::rd_kafka_vu_t {
            vtype: V::RD_KAFKA_VTYPE_VALUE,
            u: U {
                mem: rd::rd_kafka_vu_s__bindgen_ty_1__bindgen_ty_1 {
                    ptr: payload.as_ptr() as *mut _,
                    size: payload.len(),
                },
            },
        },
        rd::rd_kafka_vu_t {
            vtype: V::RD_KAFKA_VTYPE_MSGFLAGS,
            u: U {
                i: rd::RD_KAFKA_MSG_F_COPY,
            },
        },
    ];
    for (name, (_, value)) in names.iter().zip(headers) {
        vus.push(rd::rd_kafka_vu_t {
            vtype: V::RD_KAFKA_VTYPE_HEADER,
            u: U {
                header: rd::rd_kafka_vu_s__bindgen_ty_1__bindgen_ty_2 {
                    name: name.as_ptr(),
                    val: value.as_ptr() as *const _,
                    size: value.len() as isize,
                },
            },
        });
    }
    // SAFETY: every pointer in `vus` is live for the call, and librdkafka copies what it keeps
    // (RD_KAFKA_MSG_F_COPY for the value; names and header values are always copied).
    let err =
        unsafe { rd::rd_kafka_produceva(producer.client().native_ptr(), vus.as_ptr(), vus.len()) };
    assert!(err.is_null(), "producing the raw message failed");
}

#[test]
fn a_header_name_that_is_not_utf8_is_read_lossily_not_a_crash() {
    let topic = "raw-headers";
    let c = cluster(topic);
    let bootstrap = c.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let schema_path = dir.path().join("hdr.toml");
    std::fs::write(
        &schema_path,
        r#"
name = "hdr"
[[fields]]
name = "trace_id"
type = "string"
nullable = false
[[fields]]
name = "headers"
source = "_kafka_headers"
type = "json"
"#,
    )
    .unwrap();
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    let n = 20;
    for i in 0..n {
        let payload = format!("{{\"trace_id\":\"t{i}\"}}");
        let value = format!("v{i}");
        let record = BaseRecord::<(), [u8]>::to(topic)
            .partition(0)
            .payload(payload.as_bytes())
            .headers(OwnedHeaders::new().insert(Header {
                key: "h",
                value: Some(value.as_bytes()),
            }));
        producer.send(record).map_err(|(e, _)| e).unwrap();
        if i == n / 2 {
            // In the middle of the partition: the messages after it must be read too.
            produce_raw_headers(
                &producer,
                topic,
                b"{\"trace_id\":\"raw\"}",
                &[(b"\xff\xfeid", b"x"), (b"h", b"raw")],
            );
        }
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    let job = job_full(dir.path(), &bootstrap, topic, "", &schema_path);
    let o = sluice_ok(&["backfill", job.to_str().unwrap()]);
    assert!(
        o.contains(&format!("{} rows, 0 dead letters", n + 1)),
        "{o}"
    );

    let sql = format!(
        "select trace_id, headers from read_parquet('{}/*.parquet')",
        dir.path().join("out").display()
    );
    let Some(rows) = duckdb_rows(&sql) else {
        return;
    };
    let mut seen = 0;
    for line in rows.lines() {
        let r: Vec<serde_json::Value> = serde_json::from_str(line).unwrap();
        let h: serde_json::Value = serde_json::from_str(r[1].as_str().unwrap()).unwrap();
        let id = r[0].as_str().unwrap();
        if id == "raw" {
            assert_eq!(
                h,
                serde_json::json!({"\u{fffd}\u{fffd}id": "x", "h": "raw"})
            );
        } else {
            assert_eq!(h, serde_json::json!({"h": format!("v{}", &id[1..])}));
        }
        seen += 1;
    }
    assert_eq!(seen, n + 1);
}
