//go:build linux

package e2e

// ConsoleFailure exposes failure to the tests.
var ConsoleFailure = failure
