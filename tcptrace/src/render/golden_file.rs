//! Test support: compares a rendering with its golden file, or rewrites the file when
//! `UPDATE_GOLDEN` is set (then review the diff).

use std::path::PathBuf;

/// Checks `actual` against the file `name` in `dir`, a folder relative to this crate's root.
pub fn check(dir: &str, name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(dir)
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 writes it)", path.display()));
    assert!(
        expected == actual,
        "{} differs from the rendering (UPDATE_GOLDEN=1 rewrites it):\n{actual}",
        path.display()
    );
}
