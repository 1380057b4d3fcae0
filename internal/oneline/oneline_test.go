package oneline

import (
	"errors"
	"testing"
)

func TestOneLine(t *testing.T) {
	if got := Of(errors.New("  first line \nsecond")); got != "first line" {
		t.Errorf("Of = %q", got)
	}
	if got := Of(nil); got != "" {
		t.Errorf("Of(nil) = %q", got)
	}
	if got := Squash("<html>\n  <body>bad\tgateway</body>\n</html>", 0); got != "<html> <body>bad gateway</body> </html>" {
		t.Errorf("Squash = %q", got)
	}
	if got := Squash("héllo wörld", 2); got != "h..." {
		t.Errorf("Squash cap = %q", got)
	}
}
