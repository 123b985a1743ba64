//! Procedural macros of `plugboard-sdk`. Use them through the SDK: `plugboard_sdk::tool` and
//! `plugboard_sdk::export_tools!`.

use proc_macro::TokenStream;
use proc_macro2::Span;
use quote::{format_ident, quote};
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::{FnArg, Ident, ItemFn, Token, Type};

mod manifest;

/// Registers a function as a tool.
///
/// The function takes its arguments as one struct that implements `serde::Deserialize` and
/// `schemars::JsonSchema`, optionally followed by `&Context`, and returns
/// `Result<impl Into<Output>, impl Into<ToolError>>`. Its doc comment is the description
/// the model sees; `#[tool(name = "other")]` changes the tool's name (default: the
/// function's name).
#[proc_macro_attribute]
pub fn tool(attr: TokenStream, item: TokenStream) -> TokenStream {
    match expand_tool(attr.into(), item.into()) {
        Ok(ts) => ts.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

fn expand_tool(attr: proc_macro2::TokenStream, item: proc_macro2::TokenStream) -> syn::Result<proc_macro2::TokenStream> {
    let function: ItemFn = syn::parse2(item)?;
    let fn_name = &function.sig.ident;
    let mut tool_name = fn_name.to_string();
    let args = Punctuated::<syn::MetaNameValue, Token![,]>::parse_terminated.parse2(attr)?;
    for arg in args {
        if arg.path.is_ident("name") {
            match &arg.value {
                syn::Expr::Lit(syn::ExprLit { lit: syn::Lit::Str(s), .. }) => tool_name = s.value(),
                other => {
                    return Err(syn::Error::new_spanned(other, "`name` takes a string, e.g. #[tool(name = \"read\")]"));
                }
            }
        } else {
            return Err(syn::Error::new_spanned(&arg.path, "unknown option of #[tool]; the only option is `name = \"...\"`"));
        }
    }
    if tool_name.is_empty() || !tool_name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-') {
        return Err(syn::Error::new_spanned(
            fn_name,
            format!("tool name `{tool_name}` must use only lowercase letters, digits, `_` and `-`"),
        ));
    }

    let description = doc_comment(&function.attrs);
    if description.is_empty() {
        return Err(syn::Error::new_spanned(fn_name, "add a doc comment to the tool function: it is the description the model sees"));
    }

    let inputs: Vec<&FnArg> = function.sig.inputs.iter().collect();
    let args_type: Type = match inputs.first() {
        Some(FnArg::Typed(pat)) => (*pat.ty).clone(),
        _ => {
            return Err(syn::Error::new_spanned(
                &function.sig,
                "a tool function takes its arguments struct first, e.g. `fn read(args: ReadArgs, ctx: &Context)`",
            ));
        }
    };
    let call = match inputs.len() {
        1 => quote! { #fn_name(args) },
        2 => quote! { #fn_name(args, ctx) },
        _ => {
            return Err(syn::Error::new_spanned(&function.sig.inputs, "a tool function takes `(args)` or `(args, ctx: &Context)`"));
        }
    };
    let descriptor = descriptor_ident(fn_name);
    Ok(quote! {
        #function

        #[doc(hidden)]
        #[allow(non_upper_case_globals)]
        const #descriptor: ::plugboard_sdk::__private::ToolDescriptor = ::plugboard_sdk::__private::ToolDescriptor {
            name: #tool_name,
            description: #description,
            schema: ::plugboard_sdk::__private::schema_of::<#args_type>,
            call: |arguments: &str, ctx: &::plugboard_sdk::Context| {
                let args = ::plugboard_sdk::__private::parse_arguments::<#args_type>(arguments)?;
                let _ = &ctx;
                #call.map(::core::convert::Into::into).map_err(::core::convert::Into::into)
            },
        };
    })
}

fn descriptor_ident(fn_name: &Ident) -> Ident {
    format_ident!("__PLUGBOARD_TOOL_{}", fn_name)
}

fn doc_comment(attrs: &[syn::Attribute]) -> String {
    let mut lines = Vec::new();
    for attr in attrs {
        if !attr.path().is_ident("doc") {
            continue;
        }
        if let syn::Meta::NameValue(nv) = &attr.meta
            && let syn::Expr::Lit(syn::ExprLit { lit: syn::Lit::Str(s), .. }) = &nv.value
        {
            lines.push(s.value().trim().to_string());
        }
    }
    lines.join("\n").trim().to_string()
}

/// Exports the listed `#[tool]` functions as this plugin's tools and embeds the plugin's
/// manifest (id, version, description and requested capabilities, from the crate's
/// `Cargo.toml` and its `[package.metadata.plugboard]` table) in the component.
///
/// Use it once per plugin crate: `export_tools!(read, write);`
#[proc_macro]
pub fn export_tools(input: TokenStream) -> TokenStream {
    match expand_export_tools(input.into()) {
        Ok(ts) => ts.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

fn expand_export_tools(input: proc_macro2::TokenStream) -> syn::Result<proc_macro2::TokenStream> {
    let names = Punctuated::<Ident, Token![,]>::parse_terminated.parse2(input)?;
    if names.is_empty() {
        return Err(syn::Error::new(Span::call_site(), "list the tool functions to export, e.g. `export_tools!(read, write);`"));
    }
    let descriptors: Vec<Ident> = names.iter().map(descriptor_ident).collect();
    let manifest = manifest::from_cargo_env("tool-plugin").map_err(|e| syn::Error::new(Span::call_site(), e))?;
    let embedded = embed_manifest(&manifest);
    Ok(quote! {
        #[doc(hidden)]
        struct __PlugboardToolPlugin;

        impl __PlugboardToolPlugin {
            const TOOLS: &'static [&'static ::plugboard_sdk::__private::ToolDescriptor] = &[#(&#descriptors),*];
        }

        impl ::plugboard_sdk::bindings::exports::plugboard::plugin::tool::Guest for __PlugboardToolPlugin {
            fn tools() -> ::std::vec::Vec<::plugboard_sdk::bindings::plugboard::plugin::types::ToolDefinition> {
                ::plugboard_sdk::__private::definitions(Self::TOOLS)
            }

            fn call(
                name: ::std::string::String,
                arguments: ::std::string::String,
                context: ::plugboard_sdk::bindings::plugboard::plugin::types::CallContext,
            ) -> ::core::result::Result<
                ::plugboard_sdk::bindings::plugboard::plugin::types::ToolOutput,
                ::plugboard_sdk::bindings::plugboard::plugin::types::ToolError,
            > {
                ::plugboard_sdk::__private::dispatch(Self::TOOLS, &name, &arguments, context)
            }
        }

        ::plugboard_sdk::bindings::export!(__PlugboardToolPlugin with_types_in ::plugboard_sdk::bindings);

        #embedded
    })
}

/// The manifest as a `plugboard-manifest` section, and a read of the crate's `Cargo.toml`
/// that makes the compiler track it: a change to `[package.metadata.plugboard]` (the
/// capabilities) then rebuilds the plugin, which cargo alone would not do.
fn embed_manifest(manifest: &str) -> proc_macro2::TokenStream {
    let len = manifest.len();
    let bytes = syn::LitByteStr::new(manifest.as_bytes(), Span::call_site());
    let cargo_toml = std::env::var("CARGO_MANIFEST_DIR").map(|dir| format!("{dir}/Cargo.toml")).unwrap_or_default();
    quote! {
        #[doc(hidden)]
        #[used]
        #[unsafe(link_section = "plugboard-manifest")]
        static __PLUGBOARD_MANIFEST: [u8; #len] = *#bytes;

        #[doc(hidden)]
        const _: &[u8] = include_bytes!(#cargo_toml);
    }
}

/// Exports a type implementing `plugboard_sdk::provider::Provider` as this plugin's
/// provider, and embeds the plugin's manifest (including `[package.metadata.plugboard.credentials]`).
///
/// Use it once per provider crate: `export_provider!(OpenAi);`
#[proc_macro]
pub fn export_provider(input: TokenStream) -> TokenStream {
    let provider: syn::Type = match syn::parse(input) {
        Ok(t) => t,
        Err(e) => return e.to_compile_error().into(),
    };
    let manifest = match manifest::from_cargo_env("provider-plugin") {
        Ok(m) => m,
        Err(e) => return syn::Error::new(Span::call_site(), e).to_compile_error().into(),
    };
    let embedded = embed_manifest(&manifest);
    quote! {
        #[doc(hidden)]
        struct __PlugboardProviderPlugin;

        impl ::plugboard_sdk::provider_bindings::exports::plugboard::plugin::provider::Guest for __PlugboardProviderPlugin {
            type Completion = ::plugboard_sdk::provider::CompletionHandle;

            fn info() -> ::plugboard_sdk::provider::ProviderInfo {
                <#provider as ::plugboard_sdk::provider::Provider>::info()
            }

            fn complete(
                request: ::plugboard_sdk::provider::CompletionRequest,
            ) -> ::core::result::Result<
                ::plugboard_sdk::provider_bindings::exports::plugboard::plugin::provider::Completion,
                ::plugboard_sdk::provider::ProviderError,
            > {
                <#provider as ::plugboard_sdk::provider::Provider>::complete(request).map(|stream| {
                    ::plugboard_sdk::provider_bindings::exports::plugboard::plugin::provider::Completion::new(
                        ::plugboard_sdk::provider::CompletionHandle::new(stream),
                    )
                })
            }
        }

        ::plugboard_sdk::provider_bindings::export_provider_world!(__PlugboardProviderPlugin with_types_in ::plugboard_sdk::provider_bindings);

        #embedded
    }
    .into()
}

/// The hook points `export_hooks!` knows: its key and the WIT case.
const HOOK_POINTS: &[(&str, &str)] = &[
    ("session_created", "SessionCreated"),
    ("prompt_before", "PromptBefore"),
    ("tool_before", "ToolBefore"),
    ("tool_after", "ToolAfter"),
    ("chat_params", "ChatParams"),
    ("on_event", "Event"),
];

/// Exports hook functions, one per hook point, as this plugin's hooks and embeds the
/// plugin's manifest (world `hook-plugin`).
///
/// ```text
/// plugboard_sdk::export_hooks! {
///     tool_after: redact,
///     on_event: audit,
///     event_types: ["tool.state"],
/// }
/// ```
///
/// Keys: `session_created`, `prompt_before`, `tool_before`, `tool_after`, `chat_params`,
/// `compacting`, `on_event` (each takes a function path, see `plugboard_sdk::hook`), and
/// `event_types`
/// (the event types `on_event` wants; default all).
#[proc_macro]
pub fn export_hooks(input: TokenStream) -> TokenStream {
    match expand_export_hooks(input.into()) {
        Ok(ts) => ts.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

struct HookEntry {
    key: Ident,
    value: syn::Expr,
}

impl syn::parse::Parse for HookEntry {
    fn parse(input: syn::parse::ParseStream) -> syn::Result<Self> {
        let key: Ident = input.parse()?;
        input.parse::<Token![:]>()?;
        let value: syn::Expr = input.parse()?;
        Ok(HookEntry { key, value })
    }
}

fn expand_export_hooks(input: proc_macro2::TokenStream) -> syn::Result<proc_macro2::TokenStream> {
    let entries = Punctuated::<HookEntry, Token![,]>::parse_terminated.parse2(input)?;
    let mut handlers: std::collections::BTreeMap<String, syn::Expr> = Default::default();
    let mut event_types: Vec<syn::LitStr> = Vec::new();
    let known: Vec<&str> = HOOK_POINTS.iter().map(|(k, _)| *k).chain(["compacting", "event_types"]).collect();
    for entry in entries {
        let key = entry.key.to_string();
        if key == "event_types" {
            let syn::Expr::Array(array) = &entry.value else {
                return Err(syn::Error::new_spanned(&entry.value, "`event_types` takes a list of strings, e.g. [\"tool.state\"]"));
            };
            for element in &array.elems {
                match element {
                    syn::Expr::Lit(syn::ExprLit { lit: syn::Lit::Str(s), .. }) => event_types.push(s.clone()),
                    other => return Err(syn::Error::new_spanned(other, "an event type is a string, e.g. \"tool.state\" or \"plugin.*\"")),
                }
            }
        } else if key == "compacting" || HOOK_POINTS.iter().any(|(k, _)| *k == key) {
            if handlers.insert(key.clone(), entry.value).is_some() {
                return Err(syn::Error::new_spanned(&entry.key, format!("`{key}` is given twice")));
            }
        } else {
            return Err(syn::Error::new_spanned(&entry.key, format!("unknown hook point `{key}`; known: {}", known.join(", "))));
        }
    }
    if handlers.is_empty() {
        return Err(syn::Error::new(Span::call_site(), "give at least one hook, e.g. `export_hooks! { tool_after: redact }`"));
    }
    if !event_types.is_empty() && !handlers.contains_key("on_event") {
        return Err(syn::Error::new(Span::call_site(), "`event_types` needs an `on_event` hook"));
    }
    let points: Vec<proc_macro2::TokenStream> = HOOK_POINTS
        .iter()
        .filter(|(k, _)| handlers.contains_key(*k))
        .map(|(_, case)| {
            let case = format_ident!("{case}");
            quote! { ::plugboard_sdk::hook_bindings::exports::plugboard::plugin::hooks::HookPoint::#case }
        })
        .collect();
    let adapt = quote! { ::plugboard_sdk::hook::adapt };
    let call = |key: &str, args: proc_macro2::TokenStream, neutral: proc_macro2::TokenStream| match handlers.get(key) {
        Some(f) => {
            let adapter = format_ident!("{key}");
            quote! { #adapt::#adapter(#f, #args) }
        }
        None => neutral,
    };
    let session_created = call("session_created", quote! { context, session }, quote! { { let _ = (context, session); Ok(()) } });
    let prompt_before = call(
        "prompt_before",
        quote! { context, prompt },
        quote! { { let _ = (context, prompt); ::plugboard_sdk::hook_bindings::exports::plugboard::plugin::hooks::PromptVerdict::Keep } },
    );
    let tool_before = call(
        "tool_before",
        quote! { context, call },
        quote! { { let _ = (context, call); ::plugboard_sdk::hook_bindings::exports::plugboard::plugin::hooks::ToolVerdict::Allow } },
    );
    let tool_after = call("tool_after", quote! { context, call, outcome }, quote! { { let _ = (context, call, outcome); None } });
    let chat_params = call("chat_params", quote! { context, params }, quote! { { let _ = context; params } });
    let on_event = call("on_event", quote! { context, event }, quote! { { let _ = (context, event); Ok(()) } });
    let compaction = handlers.get("compacting").map(|f| {
        let wit = quote! { ::plugboard_sdk::compaction_bindings::exports::plugboard::plugin::compaction };
        quote! {
            #[doc(hidden)]
            struct __PlugboardCompactionHook;

            impl #wit::Guest for __PlugboardCompactionHook {
                fn compacting(context: #wit::CompactionContext, compaction: #wit::CompactionInfo, draft: #wit::CompactionDraft) -> #wit::CompactionDraft {
                    #adapt::compacting(#f, context, compaction, draft)
                }
            }

            ::plugboard_sdk::compaction_bindings::export_compaction_world!(__PlugboardCompactionHook with_types_in ::plugboard_sdk::compaction_bindings);
        }
    });
    let manifest = manifest::from_cargo_env("hook-plugin").map_err(|e| syn::Error::new(Span::call_site(), e))?;
    let embedded = embed_manifest(&manifest);
    let wit = quote! { ::plugboard_sdk::hook_bindings::exports::plugboard::plugin::hooks };
    Ok(quote! {
        #[doc(hidden)]
        struct __PlugboardHookPlugin;

        impl #wit::Guest for __PlugboardHookPlugin {
            fn describe() -> #wit::HookInfo {
                #adapt::info(&[#(#points),*], &[#(#event_types),*])
            }

            fn session_created(context: #wit::HookContext, session: #wit::SessionInfo) -> ::core::result::Result<(), ::std::string::String> {
                #session_created
            }

            fn prompt_before(context: #wit::HookContext, prompt: ::std::string::String) -> #wit::PromptVerdict {
                #prompt_before
            }

            fn tool_before(context: #wit::HookContext, call: #wit::ToolCall) -> #wit::ToolVerdict {
                #tool_before
            }

            fn tool_after(context: #wit::HookContext, call: #wit::ToolCall, outcome: #wit::ToolResult) -> ::core::option::Option<#wit::ResultRewrite> {
                #tool_after
            }

            fn chat_params(context: #wit::HookContext, params: #wit::TurnParams) -> #wit::TurnParams {
                #chat_params
            }

            fn on_event(context: #wit::HookContext, event: #wit::Event) -> ::core::result::Result<(), ::std::string::String> {
                #on_event
            }
        }

        ::plugboard_sdk::hook_bindings::export_hook_world!(__PlugboardHookPlugin with_types_in ::plugboard_sdk::hook_bindings);

        #compaction

        #embedded
    })
}

/// Marks a struct (or enum) as a tool's arguments: derives `Deserialize` and `JsonSchema`
/// through the SDK (no direct dependency on serde or schemars needed) and rejects unknown
/// fields, so a misspelt argument from the model is named in the error. Doc comments on
/// fields become their descriptions in the schema.
#[proc_macro_attribute]
pub fn args(attr: TokenStream, item: TokenStream) -> TokenStream {
    if !attr.is_empty() {
        return syn::Error::new(Span::call_site(), "#[args] takes no options").to_compile_error().into();
    }
    let item = proc_macro2::TokenStream::from(item);
    let deny_unknown = match syn::parse2::<syn::Item>(item.clone()) {
        Ok(syn::Item::Struct(_)) => quote! { #[serde(deny_unknown_fields)] },
        Ok(syn::Item::Enum(_)) => quote! {},
        _ => {
            return syn::Error::new(Span::call_site(), "#[args] goes on a struct or an enum").to_compile_error().into();
        }
    };
    quote! {
        #[derive(::plugboard_sdk::__private::serde::Deserialize, ::plugboard_sdk::__private::schemars::JsonSchema)]
        #[serde(crate = "::plugboard_sdk::__private::serde")]
        #[schemars(crate = "::plugboard_sdk::__private::schemars")]
        #deny_unknown
        #item
    }
    .into()
}
