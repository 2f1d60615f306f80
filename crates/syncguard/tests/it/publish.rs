//! Tests of the publish work live here.
