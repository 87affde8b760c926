//! llmload-prom
