//! Tests of `leaves`: decimals and integers read from their text at any depth, nested range
//! checks, and map keys given twice.

use super::*;

/// The dead letters' lines and reasons.
fn by_line(out: &crate::decode::Decoded) -> Vec<(u64, &str)> {
    out.dead
        .iter()
        .map(|d| (d.position.line, d.reason.as_str()))
        .collect()
}

/// JSON decimals at the top level, in a list of structs and in a map are rounded; a value
/// that does not fit, at any depth, makes its record a dead letter naming the field; CSV
/// rounds alike. (arrow's parser truncated: `2.675` was `2.67`.)
#[test]
fn decimals_at_any_depth_and_in_csv_are_rounded_and_checked() {
    use crate::decode::{Chunk, DecodeOptions, InputKind, RecordDecoder};
    use arrow::array::Decimal128Array;
    let schema = crate::schema::RepoSchema::parse(
        r#"
name = "d"
[[fields]]
name = "p"
type = "decimal(5,2)"
[[fields]]
name = "items"
type = "list<struct>"
fields = [{ name = "price", type = "decimal(5,2)", nullable = false }]
[[fields]]
name = "m"
type = "map<string,decimal(5,2)>"
"#,
        std::path::Path::new("d.toml"),
    )
    .unwrap();
    let schema = Arc::new(schema);
    let mut d = RecordDecoder::new(schema.clone(), DecodeOptions::default(), None).unwrap();
    let out = d.decode(&Chunk::of(
        "{\"p\":2.675,\"items\":[{\"price\":1.005},{\"price\":\"-0.125\"}],\"m\":{\"a\":9.999}}\n\
         {\"p\":1,\"items\":[{\"price\":1},{\"price\":1000}]}\n\
         {\"p\":1,\"m\":{\"a\":1,\"b\":\"x\"}}\n\
         {\"p\":1000}\n\
         {\"p\":null,\"items\":[]}\n\
         {\"p\":1,\"items\":[{\"price\":\"\"},{\"price\":\"x\"},{\"price\":\"y\"}]}\n",
    ));
    let reasons = by_line(&out);
    assert_eq!(
        reasons,
        [
            (
                2,
                "field `items[].price`: `1000` does not fit its type (decimal(5,2))"
            ),
            (3, "field `m{}`: `x` is not a number (decimal(5,2))"),
            (4, "field `p`: `1000` does not fit its type (decimal(5,2))"),
            // A blank required value is not a null (a struct with a null required child
            // cannot be built: the record was a library panic's dead letter), and a
            // record's many bad values make one reason.
            (
                6,
                "field `items[].price`: `` is not a number (decimal(5,2))"
            ),
        ]
    );
    assert!(out.dead.iter().all(|d| d.class() == "type"));
    let batch = arrow::compute::concat_batches(&d.output_schema(), &out.batches).unwrap();
    assert_eq!(batch.num_rows(), 2);
    let p = batch
        .column(0)
        .as_any()
        .downcast_ref::<Decimal128Array>()
        .unwrap();
    assert_eq!((p.value(0), p.is_null(1)), (268, true));
    let items = batch.column(1).as_list::<i32>();
    let prices = items.value(0);
    let prices = prices
        .as_struct()
        .column(0)
        .as_primitive::<arrow::datatypes::Decimal128Type>();
    assert_eq!(prices.values().to_vec(), [101, -13]);
    let m = batch.column(2).as_map();
    let v = m.value(0);
    assert_eq!(
        v.column(1)
            .as_primitive::<arrow::datatypes::Decimal128Type>()
            .value(0),
        1000
    );

    let opts = DecodeOptions {
        kind: InputKind::Csv {
            delimiter: b',',
            header: false,
        },
        ..Default::default()
    };
    let flat = crate::schema::RepoSchema::parse(
        "name = \"c\"\n[[fields]]\nname = \"p\"\ntype = \"decimal(5,2)\"\n",
        std::path::Path::new("c.toml"),
    )
    .unwrap();
    let mut d = RecordDecoder::new(Arc::new(flat), opts, None).unwrap();
    let out = d.decode(&Chunk::of("2.675\n-0.005\n1e3\n"));
    assert_eq!(out.dead.len(), 1, "{:?}", out.dead);
    let p = out.batches[0]
        .column(0)
        .as_primitive::<arrow::datatypes::Decimal128Type>();
    assert_eq!(p.values().to_vec(), [268, -1]);
}

/// A JSON number with a fraction in an integer field is a dead letter naming the field, at
/// the top level (the fast path and arrow-json's side alike) and inside a list or struct;
/// whole numbers however written are taken exactly. arrow-json cut `1.9` to 1 without a
/// word. CSV cells follow the same rule.
#[test]
fn integers_with_a_fraction_are_dead_letters_at_any_depth() {
    use crate::decode::{Chunk, DecodeOptions, InputKind, RecordDecoder};
    let schema = |toml: &str| {
        Arc::new(crate::schema::RepoSchema::parse(toml, std::path::Path::new("i.toml")).unwrap())
    };
    let flat = schema(
        "name = \"i\"\n[[fields]]\nname = \"n\"\ntype = \"int64\"\n\
         [[fields]]\nname = \"s\"\ntype = \"int32\"\n",
    );
    let input = "{\"n\":1.9,\"s\":1}\n\
                 {\"n\":7.0,\"s\":7e2}\n\
                 {\"n\":9007199254740993.0,\"s\":\"12.0\"}\n\
                 {\"n\":1,\"s\":2147483647.5}\n\
                 {\"n\":-0.5}\n\
                 {\"n\":1,\"s\":2147483648}\n";
    let want_dead = [
        (1, "field `n`: `1.9` is not a whole number (int64)"),
        (4, "field `s`: `2147483647.5` is not a whole number (int32)"),
        (5, "field `n`: `-0.5` is not a whole number (int64)"),
        (6, "field `s`: `2147483648` does not fit its type (int32)"),
    ];
    for reference in [false, true] {
        let mut d = RecordDecoder::new(flat.clone(), DecodeOptions::default(), None).unwrap();
        if reference {
            d = d.reference_json();
        }
        let out = d.decode(&Chunk::of(input));
        let dead = by_line(&out);
        assert_eq!(dead, want_dead, "reference only: {reference}");
        assert!(out.dead.iter().all(|d| d.class() == "type"));
        let batch = arrow::compute::concat_batches(&d.output_schema(), &out.batches).unwrap();
        let n = batch
            .column(0)
            .as_primitive::<arrow::datatypes::Int64Type>();
        let s = batch
            .column(1)
            .as_primitive::<arrow::datatypes::Int32Type>();
        assert_eq!(n.values().to_vec(), [7, 9_007_199_254_740_993]);
        assert_eq!(s.values().to_vec(), [700, 12]);
    }

    let nested = schema(
        "name = \"i\"\n[[fields]]\nname = \"counts\"\ntype = \"list<int32>\"\n\
         [[fields]]\nname = \"line\"\ntype = \"struct\"\n\
         fields = [{ name = \"qty\", type = \"int64\", nullable = false }]\n",
    );
    let mut d = RecordDecoder::new(nested, DecodeOptions::default(), None).unwrap();
    let out = d.decode(&Chunk::of(
        "{\"counts\":[1,2.0,3e1],\"line\":{\"qty\":4.0}}\n\
         {\"counts\":[1,2.5,3.5]}\n\
         {\"line\":{\"qty\":0.25}}\n",
    ));
    let dead = by_line(&out);
    assert_eq!(
        dead,
        [
            (2, "field `counts[]`: `2.5` is not a whole number (int32)"),
            (3, "field `line.qty`: `0.25` is not a whole number (int64)"),
        ]
    );
    let batch = &out.batches[0];
    let counts = batch.column(0).as_list::<i32>().value(0);
    assert_eq!(
        counts
            .as_primitive::<arrow::datatypes::Int32Type>()
            .values()
            .to_vec(),
        [1, 2, 30]
    );
    let qty = batch.column(1).as_struct().column(0).clone();
    assert_eq!(
        qty.as_primitive::<arrow::datatypes::Int64Type>().value(0),
        4
    );

    let csv = DecodeOptions {
        kind: InputKind::Csv {
            delimiter: b',',
            header: false,
        },
        ..Default::default()
    };
    let mut d = RecordDecoder::new(flat, csv, None).unwrap();
    let out = d.decode(&Chunk::of("7.0,1\n1.9,1\n,\n"));
    assert_eq!(out.dead.len(), 1, "{:?}", out.dead);
    assert_eq!(
        out.dead[0].reason,
        "field `n`: `1.9` is not a whole number (int64)"
    );
    let n = out.batches[0]
        .column(0)
        .as_primitive::<arrow::datatypes::Int64Type>();
    assert_eq!((n.value(0), n.is_null(1)), (7, true));
}

/// Dates and timestamps inside a list, struct or map are checked against years 1 to 9999
/// like top-level ones (arrow reads `+275760-09-13`, which readers then fail on); a row's
/// bad values in two fields give both reasons.
#[test]
fn nested_dates_and_timestamps_out_of_range_are_dead_letters() {
    use crate::decode::{Chunk, DecodeOptions, RecordDecoder};
    let schema = crate::schema::RepoSchema::parse(
        "name = \"n\"\n[[fields]]\nname = \"days\"\ntype = \"list<date>\"\n\
         [[fields]]\nname = \"ev\"\ntype = \"struct\"\n\
         fields = [{ name = \"at\", type = \"timestamp\" }, { name = \"n\", type = \"int32\" }]\n\
         [[fields]]\nname = \"m\"\ntype = \"map<string,date>\"\n",
        std::path::Path::new("n.toml"),
    )
    .unwrap();
    let mut d = RecordDecoder::new(Arc::new(schema), DecodeOptions::default(), None).unwrap();
    let out = d.decode(&Chunk::of(
        "{\"days\":[\"2024-01-01\",\"9999-12-31\"],\"ev\":{\"at\":\"2024-01-01T00:00:00Z\"},\"m\":{\"a\":\"0001-01-01\"}}\n\
         {\"days\":[\"2024-01-01\",\"+275760-09-13\"]}\n\
         {\"ev\":{\"at\":253402300800000}}\n\
         {\"m\":{\"a\":\"2024-01-01\",\"b\":\"0000-12-31\"}}\n\
         {\"ev\":{\"at\":\"0000-01-01T00:00:00Z\",\"n\":1.5}}\n",
    ));
    let dead = by_line(&out);
    assert_eq!(
        dead,
        [
            (
                2,
                "field `days[]`: date 100000000 days from 1970-01-01 is out of range (years 1 to 9999)"
            ),
            (
                3,
                "field `ev.at`: timestamp value 253402300800000 is out of range (years 1 to 9999)"
            ),
            (
                4,
                "field `m{}`: date 0000-12-31 is out of range (years 1 to 9999)"
            ),
            (
                5,
                "field `ev.at`: timestamp value -62167219200000 is out of range (years 1 to 9999); \
                 field `ev.n`: `1.5` is not a whole number (int32)"
            ),
        ]
    );
    assert!(out.dead.iter().all(|d| d.class() == "type"));
    assert_eq!(out.rows(), 1);
}

/// A key given twice in one map keeps its last value, as a key given twice in an object
/// does at the top level and in structs: a map with a key twice made DuckDB refuse the
/// whole file ("Map keys must be unique"). An earlier value that a later one replaces is
/// not checked.
#[test]
fn a_map_key_given_twice_keeps_its_last_value() {
    use crate::decode::{Chunk, DecodeOptions, RecordDecoder};
    let schema = crate::schema::RepoSchema::parse(
        "name = \"m\"\n[[fields]]\nname = \"m\"\ntype = \"map<string,int32>\"\n\
         [[fields]]\nname = \"s\"\ntype = \"struct\"\n\
         fields = [{ name = \"tags\", type = \"map<string,string>\" }]\n",
        std::path::Path::new("m.toml"),
    )
    .unwrap();
    let many: Vec<String> = (0..40).map(|i| format!("\"k{}\":{i}", i % 20)).collect();
    let input = format!(
        "{{\"m\":{{\"a\":1,\"b\":2,\"a\":3}},\"s\":{{\"tags\":{{\"x\":\"1\",\"x\":\"2\"}}}}}}\n\
         {{\"m\":{{\"a\":\"x\",\"a\":4}}}}\n\
         {{\"m\":{{}},\"s\":{{\"tags\":{{\"y\":\"1\"}}}}}}\n\
         {{\"m\":{{{}}}}}\n",
        many.join(",")
    );
    let mut d = RecordDecoder::new(Arc::new(schema), DecodeOptions::default(), None).unwrap();
    let out = d.decode(&Chunk::of(&input));
    assert!(out.dead.is_empty(), "{:?}", out.dead);
    let batch = &out.batches[0];
    let entries = |col: &ArrayRef, row: usize| -> Vec<(String, String)> {
        let m = col.as_map();
        if m.is_null(row) {
            return Vec::new();
        }
        let v = m.value(row);
        let keys = v.column(0).as_string::<i32>();
        let values = arrow::compute::cast(v.column(1), &DataType::Utf8).unwrap();
        let values = values.as_string::<i32>();
        (0..v.len())
            .map(|i| (keys.value(i).to_string(), values.value(i).to_string()))
            .collect()
    };
    let pairs = |p: &[(&str, &str)]| -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let m = batch.column(0);
    assert_eq!(entries(m, 0), pairs(&[("b", "2"), ("a", "3")]));
    assert_eq!(entries(m, 1), pairs(&[("a", "4")]));
    assert_eq!(entries(m, 2), pairs(&[]));
    let last: Vec<(String, String)> = (20..40)
        .map(|i| (format!("k{}", i % 20), i.to_string()))
        .collect();
    assert_eq!(entries(m, 3), last);
    let tags = batch.column(1).as_struct().column(0).clone();
    assert_eq!(entries(&tags, 0), pairs(&[("x", "2")]));
    assert_eq!(entries(&tags, 2), pairs(&[("y", "1")]));
    // The arrays stay valid for writers.
    batch.column(0).to_data().validate_full().unwrap();
    batch.column(1).to_data().validate_full().unwrap();
}

/// A required struct child that is absent is named plainly, not by arrow's message with the
/// type arrow-json read it as (`Field { "id": Utf8 }` for an int64 field read as text).
#[test]
fn a_missing_required_child_is_named_plainly() {
    use crate::decode::{Chunk, DecodeOptions, RecordDecoder};
    let schema = crate::schema::RepoSchema::parse(
        "name = \"c\"\n[[fields]]\nname = \"customer\"\ntype = \"struct\"\n\
         fields = [{ name = \"id\", type = \"int64\", nullable = false }]\n\
         [[fields]]\nname = \"odd\"\ntype = \"struct\"\n\
         fields = [{ name = 'q\":\\x', type = \"string\", nullable = false }]\n",
        std::path::Path::new("c.toml"),
    )
    .unwrap();
    let mut d = RecordDecoder::new(Arc::new(schema), DecodeOptions::default(), None).unwrap();
    let out = d.decode(&Chunk::of(
        "{\"customer\":{\"name\":\"no id\"}}\n{\"customer\":{\"id\":1}}\n\
         {\"customer\":{\"id\":2},\"odd\":{}}\n",
    ));
    let reasons: Vec<&str> = out.dead.iter().map(|d| d.reason.as_str()).collect();
    assert_eq!(
        reasons,
        [
            "whilst decoding field 'customer': required field `id` is missing or null",
            // A name with a quote, a colon and a backslash is given whole.
            "whilst decoding field 'odd': required field `q\":\\x` is missing or null"
        ]
    );
    assert_eq!(out.dead[0].class(), "type");
    assert_eq!(out.rows(), 1);
}
