package store

// RedactURLs is redactURLs, for the tests.
var RedactURLs = redactURLs
