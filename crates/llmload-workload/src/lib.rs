//! llmload-workload
