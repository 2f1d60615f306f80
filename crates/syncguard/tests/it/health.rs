//! Tests of the health work live here.
