//! llmload-gateway
