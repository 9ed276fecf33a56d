//! The README's type-mapping table is the one `typemap::mapping_markdown` renders.
//!
//! Run with `SIPHON_UPDATE_README=1` to rewrite the region between the markers.

use std::path::PathBuf;

const BEGIN: &str = "<!-- type-map:begin -->";
const END: &str = "<!-- type-map:end -->";

fn readme() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../README.md")
}

#[test]
fn readme_type_mapping_is_generated_from_the_typemap() {
    let path = readme();
    let text = std::fs::read_to_string(&path).unwrap();
    let start = text
        .find(BEGIN)
        .unwrap_or_else(|| panic!("{} has no `{BEGIN}` marker", path.display()))
        + BEGIN.len();
    let end = start
        + text[start..]
            .find(END)
            .unwrap_or_else(|| panic!("{} has no `{END}` marker", path.display()));
    let want = format!("\n{}", siphon_core::typemap::mapping_markdown());
    if text[start..end] == want {
        return;
    }
    if std::env::var_os("SIPHON_UPDATE_README").is_some_and(|v| v == "1") {
        let updated = format!("{}{want}{}", &text[..start], &text[end..]);
        std::fs::write(&path, updated).unwrap();
        return;
    }
    panic!(
        "the README's type mapping differs from typemap::mapping_markdown(); rerun with \
         SIPHON_UPDATE_README=1, or paste this between the markers:\n{BEGIN}{want}{END}\n"
    );
}
