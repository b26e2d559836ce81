package sampler

import "fmt"

// Error reports an invalid argument or an unsupported scheduler setting.
// Field is the argument name or the scheduler_config.json key.
type Error struct {
	Field  string
	Value  any
	Reason string
}

func (e *Error) Error() string {
	return fmt.Sprintf("sampler: %s = %v: %s", e.Field, e.Value, e.Reason)
}
