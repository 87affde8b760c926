//! llmload-sla
