// Package engine is empty: a stand-in, see go.mod.
package engine
