//! llmload-gpu
