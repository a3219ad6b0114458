"""Helpers that know no model: outbound HTTP and its address policy, signing, retry policy,
ids, field encryption, text and progress output. Every app may import these; they import
no app."""
