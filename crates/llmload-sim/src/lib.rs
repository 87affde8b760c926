//! llmload-sim
