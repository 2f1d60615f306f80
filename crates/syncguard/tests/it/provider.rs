//! Tests of the provider work live here.
