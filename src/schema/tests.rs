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

#[test]
fn type_names_of_other_characters_are_unknown_types() {
    for ty in ["listé", "mapé", "decimalé", "list<listé>", "é", "list<é>"] {
        let text = format!("name = \"r\"\n[[fields]]\nname = \"a\"\ntype = \"{ty}\"\n");
        let e = parse(&text).unwrap_err().to_string();
        assert!(e.contains("unknown type"), "{ty}: {e}");
    }
}

#[test]
fn types_nest_at_most_the_cap() {
    let lists = |n: usize| {
        format!(
            "name = \"r\"\n[[fields]]\nname = \"a\"\ntype = \"{}string{}\"\n",
            "list<".repeat(n),
            ">".repeat(n)
        )
    };
    assert!(parse(&lists(MAX_NESTING)).is_ok());
    // Past the cap, and far past it: an error, not a stack as deep as the file says.
    for n in [MAX_NESTING + 1, 200_000] {
        let e = parse(&lists(n)).unwrap_err().to_string();
        assert!(e.contains("nested more than 32 levels"), "{e}");
    }
    // Structs in structs, written as TOML's nested arrays of tables.
    let structs = |n: usize| {
        let mut text = String::from("name = \"r\"\n");
        for level in 1..=n {
            let key = vec!["fields"; level].join(".");
            text.push_str(&format!("[[{key}]]\nname = \"s\"\ntype = \"struct\"\n"));
        }
        let key = vec!["fields"; n + 1].join(".");
        text.push_str(&format!("[[{key}]]\nname = \"leaf\"\ntype = \"string\"\n"));
        text
    };
    assert!(parse(&structs(MAX_NESTING)).is_ok());
    let e = parse(&structs(MAX_NESTING + 1)).unwrap_err().to_string();
    assert!(e.contains("nested more than 32 levels"), "{e}");
}
