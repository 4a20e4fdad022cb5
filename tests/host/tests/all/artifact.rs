//! The built component imports only what both Spin and a plain wasmtime host provide
//! (DESIGN §2), and exports the HTTP handler plus every typed interface.

use anyhow::Result;
use dingtalk_host::{component_exports, component_imports, component_path, Host};

/// Whether the component may import `import` (`namespace:package/interface@version`).
fn allowed(import: &str) -> bool {
    let (name, version) = import.split_once('@').unwrap_or((import, ""));
    match name {
        "wasi:http/outgoing-handler" | "wasi:http/types" => version.starts_with("0.2."),
        "wasi:config/store" => version == "0.2.0-draft-2024-09-27",
        "wasi:keyvalue/store" | "wasi:keyvalue/atomics" => version == "0.2.0-draft2",
        // The plugin's own type-only interface, imported implicitly because the exports `use`
        // it. It holds no function, so a host links it without any definition; Host::build in
        // `the_component_links_without_plugin_specific_imports` proves that.
        "dingtalk:plugin/types" => version == "0.2.0",
        _ => {
            [
                "wasi:cli/",
                "wasi:clocks/",
                "wasi:random/",
                "wasi:io/",
                "wasi:filesystem/",
            ]
            .iter()
            .any(|prefix| name.starts_with(prefix))
                && version.starts_with("0.2.")
        }
    }
}

#[test]
fn the_allow_list_rejects_host_specific_imports() {
    for import in [
        "fermyon:spin/key-value@2.0.0",
        "spin:postgres/postgres@3.0.0",
        "wasi:keyvalue/batch@0.2.0-draft2",
        "wasi:keyvalue/store@0.2.0-draft",
        "wasi:http/outgoing-handler@0.3.0",
        "wasi:sockets/tcp@0.2.6",
        "wasi:config/store@0.2.0-draft",
    ] {
        assert!(!allowed(import), "{import} must not be allowed");
    }
    assert!(allowed("wasi:http/outgoing-handler@0.2.6"));
    assert!(allowed("wasi:cli/environment@0.2.0"));
}

/// The release component stays within 1 MiB (issue 12): README "Benchmark" says where the bytes
/// go and which choices keep it there.
#[test]
fn the_component_fits_in_one_mebibyte() -> Result<()> {
    let size = std::fs::metadata(component_path())?.len();
    assert!(
        size <= 1 << 20,
        "the component is {size} bytes, over 1 MiB (1,048,576 bytes)"
    );
    Ok(())
}

#[test]
fn imports_are_portable() -> Result<()> {
    let path = component_path();
    let size = std::fs::metadata(&path)?.len();
    println!(
        "artifact: {} ({size} bytes, {:.0} KiB)",
        path.display(),
        size as f64 / 1024.0
    );

    let imports = component_imports(&path)?;
    println!("imports:\n  {}", imports.join("\n  "));
    let rejected: Vec<_> = imports.iter().filter(|i| !allowed(i)).collect();
    assert!(
        rejected.is_empty(),
        "the component imports what Spin or a plain wasmtime host may not provide: {rejected:?}"
    );
    for required in [
        "wasi:config/store@",
        "wasi:keyvalue/store@",
        "wasi:http/outgoing-handler@",
    ] {
        assert!(
            imports.iter().any(|i| i.starts_with(required)),
            "expected an import of {required}"
        );
    }
    Ok(())
}

#[test]
fn exports_are_complete() -> Result<()> {
    let exports = component_exports(component_path())?;
    println!("exports:\n  {}", exports.join("\n  "));
    let mut expected = vec!["wasi:http/incoming-handler@0.2.0".to_owned()];
    expected.extend(
        ["config", "routes", "directory", "notify", "corps"]
            .map(|interface| format!("dingtalk:plugin/{interface}@0.2.0")),
    );
    for export in &expected {
        assert!(exports.contains(export), "missing export {export}");
    }
    Ok(())
}

#[test]
fn the_component_links_without_plugin_specific_imports() -> Result<()> {
    // The host's linker has WASI p2, wasi-http, wasi:config and wasi:keyvalue, and nothing for
    // `dingtalk:plugin/types`; building fails if the component needs anything else.
    Host::builder().build()?;
    Ok(())
}
