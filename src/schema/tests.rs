//! Schema files: parsing, validation errors, Arrow types.

use super::*;

fn parse(text: &str) -> Result<RepoSchema, SchemaError> {
    RepoSchema::parse(text, Path::new("t.toml"))
}

#[test]
fn nested_types_map_to_arrow() {
    let s = parse(
        r#"
name = "orders"
[[fields]]
name = "items"
type = "list<struct>"
fields = [ { name = "sku", type = "string" }, { name = "qty", type = "int32", nullable = false } ]
[[fields]]
name = "attrs"
type = "map<string,int64>"
[[fields]]
name = "price"
type = "decimal(10,2)"
[[fields]]
name = "at"
type = "timestamp"
unit = "us"
timezone = "+08:00"
"#,
    )
    .unwrap();
    let a = s.arrow_schema();
    assert!(matches!(a.field(0).data_type(), DataType::List(f)
        if matches!(f.data_type(), DataType::Struct(c) if c.len() == 2 && !c[1].is_nullable())));
    assert!(matches!(a.field(1).data_type(), DataType::Map(_, false)));
    assert_eq!(a.field(2).data_type(), &DataType::Decimal128(10, 2));
    assert_eq!(
        a.field(3).data_type(),
        &DataType::Timestamp(TimeUnit::Microsecond, Some("+08:00".into()))
    );
}

#[test]
fn errors_name_file_field_and_reason() {
    let e = parse("name = \"x\"\n[[fields]]\nname = \"a\"\ntype = \"int33\"\n").unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("t.toml") && msg.contains("`a`") && msg.contains("int33"),
        "{msg}"
    );

    let e = parse("name = \"x\"\n[[fields]]\nname = \"a\"\ntype = \"timestamp\"\nunit = \"ns\"\n")
        .unwrap_err();
    assert!(e.to_string().contains("unit `ns`"), "{e}");

    let e = parse("name = \"x\"\n[[fields]]\nname = \"a\"\ntype = \"string\"\ncolour = 1\n")
        .unwrap_err();
    assert!(e.to_string().contains("colour"), "{e}");

    let e = parse("name = \"x\"\n[[fields]]\nname = \"a\"\ntype = \"string\"\n[[fields]]\nname = \"a\"\ntype = \"int32\"\n")
        .unwrap_err();
    assert!(e.to_string().contains("used twice"), "{e}");

    let e =
        parse("name = \"x\"\n[[fields]]\nname = \"a\"\ntype = \"decimal(50,2)\"\n").unwrap_err();
    assert!(e.to_string().contains("precision"), "{e}");

    let e = parse(
        "name = \"x\"\n[[fields]]\nname = \"a\"\ntype = \"timestamp\"\ntimezone = \"Mars/Base\"\n",
    )
    .unwrap_err();
    assert!(e.to_string().contains("Mars/Base"), "{e}");
}

#[test]
fn an_offset_is_written_with_a_colon_whatever_its_spelling() {
    let s = parse(
        r#"
name = "x"
[[fields]]
name = "a"
type = "timestamp"
timezone = "+0930"
"#,
    )
    .unwrap();
    assert_eq!(
        s.arrow_schema().field(0).data_type(),
        &DataType::Timestamp(TimeUnit::Millisecond, Some("+09:30".into()))
    );
}

#[test]
fn shipped_schemas_load() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        RepoSchema::load(&p).unwrap_or_else(|e| panic!("{e}"));
        n += 1;
    }
    assert!(n >= 2);
}
