"""Pass plugins compiled to WebAssembly (aobc.wasm_passes)."""
