//! Tests of the sync work live here.
