//! The `llm` capability (`spec.capabilities.llm`): chat completions sent by the
//! host to the granted provider and model. Work in progress: the provider
//! translations exist; the HTTP client, budgets, retries and linking do not
//! yet, so a component importing `llm` is still refused at load.

pub mod client;
pub mod provider;

#[cfg(test)]
mod tests;
