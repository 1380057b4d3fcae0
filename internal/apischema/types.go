package apischema

import (
	"maps"
	"slices"
	"strconv"
)

// Kind is a JSON type.
type Kind uint8

// The JSON types the schema uses.
const (
	String Kind = iota + 1
	Integer
	Number
	Boolean
	Object
	Array
)

func (k Kind) String() string {
	switch k {
	case String:
		return "string"
	case Integer:
		return "integer"
	case Number:
		return "number"
	case Boolean:
		return "boolean"
	case Object:
		return "object"
	case Array:
		return "array"
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Type is the shape of one JSON value. Types in the tables are shared and
// must not be changed after init; the builder methods return copies.
type Type struct {
	Kind Kind
	// Enum lists the allowed values of a string or integer (integers in
	// decimal). Empty means any value.
	Enum []string
	// DateTime marks a string holding an ISO 8601 date and time.
	DateTime bool
	// Nullable allows JSON null.
	Nullable bool
	// Props are the known properties of an object.
	Props map[string]*Type
	// Required properties must be present.
	Required []string
	// Values, when set, is the type of every value of an object whose keys
	// are free (a map, such as hyperparams sections).
	Values *Type
	// Open allows properties beyond Props, with any value (an object the
	// schema leaves free, or one with additionalProperties: true).
	Open bool
	// Items is the type of an array's elements.
	Items *Type
	// Why is set on a property the schema does not define but the real
	// server sends anyway: it says why it may appear.
	Why string
}

// props maps property names to types.
type props map[string]*Type

func str() *Type                      { return &Type{Kind: String} }
func date() *Type                     { return &Type{Kind: String, DateTime: true} }
func integer() *Type                  { return &Type{Kind: Integer} }
func number() *Type                   { return &Type{Kind: Number} }
func boolean() *Type                  { return &Type{Kind: Boolean} }
func arr(items *Type) *Type           { return &Type{Kind: Array, Items: items} }
func strs() *Type                     { return arr(str()) }
func mapOf(values *Type) *Type        { return &Type{Kind: Object, Values: values} }
func anyObject() *Type                { return &Type{Kind: Object, Open: true} }
func strEnum(v ...string) *Type       { return &Type{Kind: String, Enum: v} }
func nullable(t *Type) *Type          { c := t.clone(); c.Nullable = true; return c }
func openWith(p props) *Type          { t := obj(p); t.Open = true; return t }
func extra(t *Type, why string) *Type { c := t.clone(); c.Why = why; return c }

// zeroOrOne is the integer counters that are 0 or 1 (updated, queued...).
func zeroOrOne() *Type { return &Type{Kind: Integer, Enum: []string{"0", "1"}} }

// obj is a closed object: only the listed properties may appear.
func obj(p props, required ...string) *Type {
	return &Type{Kind: Object, Props: maps.Clone(map[string]*Type(p)), Required: required}
}

func (t *Type) clone() *Type {
	c := *t
	c.Props = maps.Clone(t.Props)
	c.Required = slices.Clone(t.Required)
	c.Enum = slices.Clone(t.Enum)
	return &c
}

// with returns a copy of object t with more (or replaced) properties, the
// way a newer revision extends an older one.
func (t *Type) with(p props) *Type {
	c := t.clone()
	if c.Props == nil {
		c.Props = map[string]*Type{}
	}
	maps.Copy(c.Props, p)
	return c
}

// without returns a copy of object t without the named properties.
func (t *Type) without(names ...string) *Type {
	c := t.clone()
	for _, n := range names {
		delete(c.Props, n)
		c.Required = slices.DeleteFunc(c.Required, func(r string) bool { return r == n })
	}
	return c
}
