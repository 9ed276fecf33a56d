//! `TableName::key`: one key per name, plain for ordinary names, read back by
//! `TableName::from_key`.

use siphon_core::TableName;

fn t(schema: Option<&str>, name: &str) -> TableName {
    TableName::new(schema, name)
}

#[test]
fn ordinary_names_keep_their_display_form() {
    assert_eq!(t(Some("public"), "orders").key(), "public.orders");
    assert_eq!(t(None, "orders").key(), "orders");
    assert_eq!(t(Some("sales"), "order items").key(), "sales.order items");
}

#[test]
fn names_that_display_alike_have_different_keys() {
    let a = t(Some("a"), "b.c");
    let b = t(Some("a.b"), "c");
    assert_eq!(a.to_string(), b.to_string());
    assert_eq!(a.key(), r#""a"."b.c""#);
    assert_eq!(b.key(), r#""a.b"."c""#);
    // A bare name with a dot is not the schema-qualified name it displays as.
    assert_eq!(t(None, "a.b").key(), r#""a.b""#);
    assert_ne!(t(None, "a.b").key(), t(Some("a"), "b").key());
    // Quotes are doubled, so a quote cannot end a part early.
    assert_eq!(t(Some(r#"x"."y"#), "z").key(), r#""x"".""y"."z""#);
    assert_eq!(t(Some("x"), r#"""y"#).key(), r#""x"."""""y""#);
}

#[test]
fn every_key_reads_back_to_its_name() {
    let names = [
        t(Some("public"), "orders"),
        t(None, "orders"),
        t(Some("a"), "b.c"),
        t(Some("a.b"), "c"),
        t(None, "a.b"),
        t(None, r#"say "hi""#),
        t(Some(r#"x"."y"#), "z"),
        t(Some("x"), r#"""y"#),
        t(Some(""), ""),
        t(None, "*"),
    ];
    for name in &names {
        assert_eq!(
            TableName::from_key(&name.key()).as_ref(),
            Some(name),
            "{}",
            name.key()
        );
    }
    for (i, a) in names.iter().enumerate() {
        for b in &names[i + 1..] {
            assert_ne!(a.key(), b.key(), "{a:?} {b:?}");
        }
    }
}

#[test]
fn strings_no_name_has_as_its_key_are_refused() {
    for bad in [
        "a.b.c",
        r#"a"b"#,
        r#"a."b""#,
        r#""a"#,
        r#""a"b"#,
        r#""a".b"#,
        r#""a"."b"."c""#,
        r#""a"."#,
        // Quoted, but the name is plain: its key is `a.b`.
        r#""a"."b""#,
        r#""orders""#,
    ] {
        assert_eq!(TableName::from_key(bad), None, "{bad}");
    }
}

#[test]
fn legacy_keys_are_kept_renamed_or_refused() {
    use siphon_core::LegacyKey;
    assert_eq!(LegacyKey::of("public.orders"), LegacyKey::Kept);
    assert_eq!(LegacyKey::of("orders"), LegacyKey::Kept);
    assert_eq!(
        LegacyKey::of(r#"x"y.z"#),
        LegacyKey::Renamed(r#""x""y"."z""#.into())
    );
    assert_eq!(
        LegacyKey::of(r#"say "hi""#),
        LegacyKey::Renamed(r#""say ""hi""""#.into())
    );
    assert_eq!(LegacyKey::of("a.b.c"), LegacyKey::Ambiguous);
    assert_eq!(LegacyKey::of(r#"a."b.c""#), LegacyKey::Ambiguous);
}
