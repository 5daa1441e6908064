//! Procedural macros for the Verge SDK, `verge-sdk`. Use them through its
//! library, `verge`: `#[verge::worker]` and `#[verge::durable_object]`. They
//! expand to paths under `::verge`, the library's name (not the package's).

use proc_macro::TokenStream;
use proc_macro2::Span;
use quote::{format_ident, quote};
use syn::{
    FnArg, ImplItem, ImplItemFn, ItemFn, ItemImpl, Pat, ReturnType, Type, parse_macro_input,
};

/// Registers a `fn(Request, Env) -> Result<Response>` as the worker's
/// fetch handler. See `verge::worker` for the full documentation.
#[proc_macro_attribute]
pub fn worker(attr: TokenStream, item: TokenStream) -> TokenStream {
    registered("worker", attr, item, |name| {
        quote! {
            ::verge::__private::WorkerRegistration {
                fetch: |request| ::verge::__private::handle_fetch(request, #name),
            }
        }
    })
}

/// Registers a `fn(ScheduledEvent, Env) -> Result<()>` as the worker's
/// scheduled (cron) handler. See `verge::scheduled` for the full
/// documentation.
#[proc_macro_attribute]
pub fn scheduled(attr: TokenStream, item: TokenStream) -> TokenStream {
    registered("scheduled", attr, item, |name| {
        quote! { ::verge::__private::ScheduledRegistration { run: #name } }
    })
}

/// Makes the type of an `impl` block a Durable Object class. See
/// `verge::durable_object` for the full documentation.
#[proc_macro_attribute]
pub fn durable_object(attr: TokenStream, item: TokenStream) -> TokenStream {
    if !attr.is_empty() {
        return error(
            Span::call_site(),
            "#[verge::durable_object] takes no arguments",
        );
    }
    let mut block = parse_macro_input!(item as ItemImpl);
    if let Some((_, path, _)) = &block.trait_ {
        return error_spanned(
            path,
            "put #[verge::durable_object] on the class's own impl block (with `new`, `fetch` and `#[rpc]` methods), not a trait impl",
        );
    }
    let class = &block.self_ty;
    let Type::Path(class_path) = class.as_ref() else {
        return error_spanned(class, "a Durable Object class must be a named type");
    };
    let class_ident = &class_path
        .path
        .segments
        .last()
        .expect("a path has segments")
        .ident;
    let class_name = class_ident.to_string();
    let client = format_ident!("{}Client", class_ident);

    let mut has_new = false;
    let mut has_fetch = false;
    let mut events = Vec::new();
    let mut rpcs: Vec<ImplItemFn> = Vec::new();
    for item in &mut block.items {
        let ImplItem::Fn(method) = item else { continue };
        let before = method.attrs.len();
        method.attrs.retain(|a| !a.path().is_ident("rpc"));
        if method.attrs.len() != before {
            if method.sig.receiver().is_none() {
                return error_spanned(&method.sig, "#[rpc] methods take `&self` or `&mut self`");
            }
            rpcs.push(method.clone());
        }
        match method.sig.ident.to_string().as_str() {
            "new" => has_new = true,
            "fetch" => has_fetch = true,
            name @ ("websocket_message" | "websocket_close" | "websocket_error" | "alarm") => {
                events.push(event_forward(name))
            }
            _ => {}
        }
    }
    if !has_new {
        return error_spanned(
            &block.self_ty,
            "a Durable Object class needs `fn new(state: verge::State, env: verge::Env) -> Self` (or `-> verge::Result<Self>`)",
        );
    }

    let fetch = if has_fetch {
        quote! { self.fetch(request) }
    } else {
        quote! { ::core::result::Result::Ok(::verge::Response::error(
        ::std::format!("{} has no fetch handler", #class_name), 501)) }
    };

    let mut dispatch_arms = Vec::new();
    let mut client_methods = Vec::new();
    for method in &rpcs {
        let name = &method.sig.ident;
        let method_name = name.to_string();
        let mut arg_names = Vec::new();
        let mut arg_types = Vec::new();
        for (i, input) in method.sig.inputs.iter().enumerate() {
            let FnArg::Typed(arg) = input else { continue };
            arg_names.push(match arg.pat.as_ref() {
                Pat::Ident(ident) => ident.ident.clone(),
                _ => format_ident!("arg{}", i),
            });
            arg_types.push(arg.ty.as_ref().clone());
        }
        let output = match &method.sig.output {
            ReturnType::Type(_, ty) => ty.as_ref().clone(),
            ReturnType::Default => {
                return error_spanned(&method.sig, "#[rpc] methods return verge::Result<T>");
            }
        };
        let docs = method.attrs.iter().filter(|a| a.path().is_ident("doc"));
        dispatch_arms.push(quote! {
            #method_name => {
                let (#(#arg_names,)*): (#(#arg_types,)*) = ::verge::__private::rpc_args(method, args)?;
                let result = self.#name(#(#arg_names),*)?;
                ::verge::__private::rpc_result(&result)
            }
        });
        client_methods.push(quote! {
            #(#docs)*
            pub fn #name(&self, #(#arg_names: #arg_types),*) -> #output {
                self.stub.call(#method_name, &(#(#arg_names,)*))
            }
        });
    }

    let client_doc =
        format!("Calls the `#[rpc]` methods of a [`{class_name}`] object through a stub.");
    let register = format_ident!("__verge_construct_{}", class_ident);
    quote! {
        #block

        impl ::verge::__private::ObjectInstance for #class {
            fn fetch(&mut self, request: ::verge::Request) -> ::verge::Result<::verge::Response> {
                #fetch
            }

            fn rpc(&mut self, method: &str, args: &[u8]) -> ::verge::Result<::std::vec::Vec<u8>> {
                match method {
                    #(#dispatch_arms)*
                    other => ::core::result::Result::Err(::verge::Error::Rpc(
                        ::std::format!("{} has no #[rpc] method `{}`", #class_name, other),
                    )),
                }
            }

            #(#events)*
        }

        #[doc(hidden)]
        #[allow(non_snake_case)]
        fn #register(
            state: ::verge::State,
            env: ::verge::Env,
        ) -> ::verge::Result<::std::boxed::Box<dyn ::verge::__private::ObjectInstance>> {
            let object: #class = ::verge::__private::Constructed::into_object(<#class>::new(state, env))?;
            ::core::result::Result::Ok(::std::boxed::Box::new(object))
        }

        ::verge::__private::inventory::submit! {
            ::verge::__private::ClassRegistration { name: #class_name, construct: #register }
        }

        #[doc = #client_doc]
        #[derive(Debug, Clone)]
        pub struct #client {
            stub: ::verge::Stub,
        }

        impl #client {
            #(#client_methods)*
        }

        impl ::verge::DurableObjectClass for #class {
            type Client = #client;

            fn client(stub: ::verge::Stub) -> #client {
                #client { stub }
            }
        }
    }
    .into()
}

/// Forwards an event of the object interface to the class's method of the
/// same name (an inherent method wins over the trait's default).
fn event_forward(name: &str) -> proc_macro2::TokenStream {
    match name {
        "websocket_message" => quote! {
            fn websocket_message(
                &mut self,
                ws: ::verge::WebSocket,
                message: ::verge::WebSocketMessage,
            ) -> ::verge::Result<()> {
                self.websocket_message(ws, message)
            }
        },
        "websocket_close" => quote! {
            fn websocket_close(
                &mut self,
                ws: ::verge::WebSocket,
                code: u16,
                reason: ::std::string::String,
                was_clean: bool,
            ) -> ::verge::Result<()> {
                self.websocket_close(ws, code, reason, was_clean)
            }
        },
        "websocket_error" => quote! {
            fn websocket_error(
                &mut self,
                ws: ::verge::WebSocket,
                error: ::std::string::String,
            ) -> ::verge::Result<()> {
                self.websocket_error(ws, error)
            }
        },
        _ => quote! {
            fn alarm(&mut self, info: ::verge::AlarmInfo) -> ::verge::Result<()> {
                self.alarm(info)
            }
        },
    }
}

/// The function under `#[verge::<macro_name>]`, unchanged, and the
/// registration `registration` makes of its name, submitted to
/// `inventory`.
fn registered(
    macro_name: &str,
    attr: TokenStream,
    item: TokenStream,
    registration: impl FnOnce(&syn::Ident) -> proc_macro2::TokenStream,
) -> TokenStream {
    let handler = match handler_fn(macro_name, attr, item) {
        Ok(handler) => handler,
        Err(error) => return error,
    };
    let registration = registration(&handler.sig.ident);
    quote! {
        #handler

        ::verge::__private::inventory::submit! { #registration }
    }
    .into()
}

/// The function under `#[verge::<macro_name>]`, which takes no arguments
/// and must not be `async`.
fn handler_fn(
    macro_name: &str,
    attr: TokenStream,
    item: TokenStream,
) -> Result<ItemFn, TokenStream> {
    if !attr.is_empty() {
        return Err(error(
            Span::call_site(),
            &format!("#[verge::{macro_name}] takes no arguments"),
        ));
    }
    let handler: ItemFn = syn::parse(item).map_err(|e| TokenStream::from(e.to_compile_error()))?;
    if let Some(asyncness) = &handler.sig.asyncness {
        return Err(error_spanned(
            asyncness,
            "Verge handlers are synchronous: remove `async` (host calls such as fetch block the guest, never a host thread)",
        ));
    }
    Ok(handler)
}

fn error(span: Span, message: &str) -> TokenStream {
    syn::Error::new(span, message).to_compile_error().into()
}

fn error_spanned(tokens: impl quote::ToTokens, message: &str) -> TokenStream {
    syn::Error::new_spanned(tokens, message)
        .to_compile_error()
        .into()
}
