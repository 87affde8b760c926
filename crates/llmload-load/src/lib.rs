//! llmload-load
