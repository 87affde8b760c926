//! llmload-report
