//! `GET /hello` answering the hello example's JSON, written directly against
//! `wasi:http/incoming-handler` as `wasmtime serve` and Spin expect.

use std::io::Write as _;

use wasip2::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

wasip2::http::proxy::export!(Hello);

struct Hello;

impl wasip2::exports::http::incoming_handler::Guest for Hello {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        let (status, body) = if path == "/hello" {
            (
                200,
                br#"{"message":"Hello from Verge!","path":"/hello"}"#.as_slice(),
            )
        } else {
            (404, b"Not Found".as_slice())
        };
        let headers = Fields::from_list(&[("content-type".into(), b"application/json".to_vec())])
            .expect("valid header");
        let response = OutgoingResponse::new(headers);
        response.set_status_code(status).expect("valid status");
        let outgoing = response.body().expect("body taken once");
        ResponseOutparam::set(response_out, Ok(response));
        let mut stream = outgoing.write().expect("stream taken once");
        stream.write_all(body).expect("writing the body");
        stream.flush().expect("flushing the body");
        drop(stream);
        OutgoingBody::finish(outgoing, None).expect("finishing the body");
    }
}
