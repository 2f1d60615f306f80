//! Tests of the webhook work live here.
