//! Imports `acme:test/query` and `acme:test/cache`, which no Verge host
//! provides: uploading it must fail and name both.

wit_bindgen::generate!({ path: "wit", world: "unsatisfiable" });

struct Component;

impl Guest for Component {
    fn run() -> String {
        let cached = acme::test::cache::get("k").unwrap_or_default();
        cached + &acme::test::query::run("select 1")
    }
}

export!(Component);
