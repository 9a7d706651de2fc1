package methods

// HeadMaps returns the query and key maps of (layer, query head qh) at
// head dimension d and their activation, as Prepare uses them: the
// weights file's, or the random maps of init: random. For GPU twins of
// the method (package gpueval).
func (h *HashAttention) HeadMaps(layer, qh, d int) (*HeadMaps, string, error) {
	return h.maps(layer, qh, d)
}

// Bits returns the code width in bits.
func (h *HashAttention) Bits() int { return h.bits() }
