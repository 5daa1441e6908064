//! Procedural macros for the `verge` SDK. Use them through `verge`:
//! `#[verge::worker]`.

use proc_macro::TokenStream;
use quote::quote;
use syn::{ItemFn, parse_macro_input};

/// Exports a `fn(Request, Env) -> Result<Response>` as the worker's fetch
/// handler. See `verge::worker` for the full documentation.
#[proc_macro_attribute]
pub fn worker(attr: TokenStream, item: TokenStream) -> TokenStream {
    if !attr.is_empty() {
        return syn::Error::new(
            proc_macro2::Span::call_site(),
            "#[verge::worker] takes no arguments",
        )
        .to_compile_error()
        .into();
    }
    let handler = parse_macro_input!(item as ItemFn);
    if let Some(asyncness) = &handler.sig.asyncness {
        return syn::Error::new_spanned(
            asyncness,
            "Verge handlers are synchronous: remove `async` (host calls such as fetch block the guest, never a host thread)",
        )
        .to_compile_error()
        .into();
    }
    let name = &handler.sig.ident;
    quote! {
        #handler

        #[doc(hidden)]
        struct __VergeWorker;

        impl ::verge::__private::HandlerGuest for __VergeWorker {
            fn handle(
                request: ::verge::__private::WireRequest,
            ) -> ::core::result::Result<::verge::__private::WireResponse, ::std::string::String> {
                ::verge::__private::handle_fetch(request, #name)
            }
        }

        ::verge::__private::bindings::export_worker!(__VergeWorker);
    }
    .into()
}
