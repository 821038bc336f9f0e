//! Streaming detector for resistivity spikes and displacement pop-ins: O(1) per sample, no allocation.
