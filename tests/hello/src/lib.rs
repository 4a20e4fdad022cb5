//! A hello-world Spin component built in the benchmark's own run (`dingtalk-bench`): it answers
//! every request with a small fixed HTML page through the same `wasi:http` entry the plugin uses,
//! so "R1 page rate ÷ hello-world rate" under `spin up` measures the plugin's per-request work.

#[cfg(target_arch = "wasm32")]
mod component {
    use spin_sdk::http::{Fields, IncomingRequest, OutgoingResponse, ResponseOutparam};

    /// The page: about the size of the plugin's JSAPI page head, without any work behind it.
    const PAGE: &[u8] = b"<!doctype html><html lang=\"zh-CN\"><meta charset=\"utf-8\"><title>hello</title><p>hello</p></html>";

    #[spin_sdk::http_component]
    async fn hello(_req: IncomingRequest, out: ResponseOutparam) {
        let fields = Fields::new();
        let _ = fields.append("content-type", b"text/html; charset=utf-8");
        let response = OutgoingResponse::new(fields);
        let _ = response.set_status_code(200);
        let _ = out.set_with_body(response, PAGE.to_vec()).await;
    }
}
