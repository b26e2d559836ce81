package weights

import (
	"fmt"
	"strings"
)

// GGUFValueType is the type tag of a GGUF metadata value.
type GGUFValueType uint32

// The GGUF metadata value types (gguf.h's gguf_type).
const (
	GGUFUint8 GGUFValueType = iota
	GGUFInt8
	GGUFUint16
	GGUFInt16
	GGUFUint32
	GGUFInt32
	GGUFFloat32
	GGUFBool
	GGUFString
	GGUFArray
	GGUFUint64
	GGUFInt64
	GGUFFloat64
	ggufTypeEnd
)

var ggufTypeNames = [...]string{"UINT8", "INT8", "UINT16", "INT16", "UINT32", "INT32", "FLOAT32", "BOOL", "STRING", "ARRAY", "UINT64", "INT64", "FLOAT64"}

// ggufScalarSize is the encoded size of each fixed-size type (0: variable).
var ggufScalarSize = [...]int{1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8}

func (t GGUFValueType) String() string {
	if t < ggufTypeEnd {
		return ggufTypeNames[t]
	}
	return fmt.Sprintf("GGUFValueType(%d)", uint32(t))
}

// GGUFValue is one metadata value. Scalars are held as uint8, int8, uint16,
// int16, uint32, int32, float32, bool, string, uint64, int64 or float64;
// arrays as []GGUFValue (Elem tells the element type) except the common
// string and numeric arrays, which are held as []string, []int64, []uint64
// or []float64 for compactness (the original element type is in Elem).
type GGUFValue struct {
	Type GGUFValueType
	Elem GGUFValueType // element type when Type is GGUFArray
	V    any
}

// Uint returns an unsigned integer value of any width (ok=false otherwise
// or when negative).
func (v GGUFValue) Uint() (uint64, bool) {
	switch x := v.V.(type) {
	case uint8:
		return uint64(x), true
	case uint16:
		return uint64(x), true
	case uint32:
		return uint64(x), true
	case uint64:
		return x, true
	case int8:
		return uint64(x), x >= 0
	case int16:
		return uint64(x), x >= 0
	case int32:
		return uint64(x), x >= 0
	case int64:
		return uint64(x), x >= 0
	}
	return 0, false
}

// Float returns a float value (either width) or an integer as float64.
func (v GGUFValue) Float() (float64, bool) {
	switch x := v.V.(type) {
	case float32:
		return float64(x), true
	case float64:
		return x, true
	}
	switch x := v.V.(type) {
	case int8:
		return float64(x), true
	case int16:
		return float64(x), true
	case int32:
		return float64(x), true
	case int64:
		return float64(x), true
	}
	if u, ok := v.Uint(); ok {
		return float64(u), true
	}
	return 0, false
}

// Str returns a string value.
func (v GGUFValue) Str() (string, bool) {
	s, ok := v.V.(string)
	return s, ok
}

// Strings returns a string array.
func (v GGUFValue) Strings() ([]string, bool) {
	s, ok := v.V.([]string)
	return s, ok
}

// String formats the value for reports; long arrays are abbreviated.
func (v GGUFValue) String() string {
	switch x := v.V.(type) {
	case string:
		if len(x) > 60 {
			return fmt.Sprintf("%q...", x[:60])
		}
		return fmt.Sprintf("%q", x)
	case []string:
		return fmt.Sprintf("[%d %s]", len(x), v.Elem)
	case []int64:
		return fmt.Sprintf("[%d %s]", len(x), v.Elem)
	case []uint64:
		return fmt.Sprintf("[%d %s]", len(x), v.Elem)
	case []float64:
		return fmt.Sprintf("[%d %s]", len(x), v.Elem)
	case []GGUFValue:
		parts := make([]string, 0, min(len(x), 4))
		for _, e := range x[:min(len(x), 4)] {
			parts = append(parts, e.String())
		}
		if len(x) > 4 {
			parts = append(parts, "...")
		}
		return "[" + strings.Join(parts, " ") + "]"
	}
	return fmt.Sprint(v.V)
}
