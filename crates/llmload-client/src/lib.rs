//! llmload-client
