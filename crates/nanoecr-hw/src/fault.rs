//! Fault injection around a load frame: a host stall, a host that cannot keep the rate, an
//! actuator that stops following its command, on the simulated rig or a real backend.
//!
//! The loop's fault handling (late-tick window, stall catch-up, feedback age, tracking interlock)
//! can only be shown by making the fault happen on demand. [`FaultyFrame`] forwards every call to
//! the frame it wraps and lets one hook act on each command first: block (the sleep is the fault
//! itself, never a synchronisation) and/or change the command that reaches the actuator; another,
//! optional, takes the place of `acquire` (samples held back by a stalled device clock and
//! released in blocks, …). One
//! wrapper instead of one per test keeps every forwarded method in one place, so a wrapped frame
//! is never silently missing one (`prepare` was, in one of the copies this replaces).

use nanoecr_core::{Event, Segment};

use crate::{DeviceInfo, FrameClock, FrameLimits, FrameReading, HwError, LoadFrame};

/// One command as the hook of a [`FaultyFrame`] sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CommandCall {
    /// How many commands the wrapper forwarded before this one (the first is 0).
    pub index: u64,
    /// The command the control loop sent, µN.
    pub command_un: f64,
    /// The program segment it was sent in.
    pub segment: Segment,
}

/// Acts on each command before it is forwarded; returns the command to forward, µN.
pub type CommandHook = Box<dyn FnMut(CommandCall) -> f64 + Send>;

/// Takes the place of `acquire`: called with the wrapped frame (to acquire from as it likes) and
/// the caller's buffer; returns how many samples it wrote there.
pub type AcquireHook = Box<dyn FnMut(&mut dyn LoadFrame, &mut [FrameReading]) -> Result<usize, HwError> + Send>;

/// A load frame with a fault injected on its command path and/or its acquire path; see the module
/// documentation.
pub struct FaultyFrame {
    inner: Box<dyn LoadFrame>,
    commands: u64,
    hook: CommandHook,
    acquire: Option<AcquireHook>,
    clock: Option<FrameClock>,
}

impl std::fmt::Debug for FaultyFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultyFrame").field("commands", &self.commands).field("clock", &self.clock).finish()
    }
}

impl FaultyFrame {
    /// Wrap `inner`; `hook` runs before every command.
    pub fn wrap(inner: Box<dyn LoadFrame>, hook: impl FnMut(CommandCall) -> f64 + Send + 'static) -> Box<Self> {
        Box::new(Self { inner, commands: 0, hook: Box::new(hook), acquire: None, clock: None })
    }

    /// Wrap `inner` with its commands passed on unchanged (a fault on the acquire side only,
    /// with [`acquiring_through`](Self::acquiring_through)).
    pub fn passing(inner: Box<dyn LoadFrame>) -> Box<Self> {
        Self::wrap(inner, |c| c.command_un)
    }

    /// Route every `acquire` through `hook` instead of straight to the wrapped frame.
    #[must_use]
    pub fn acquiring_through(
        mut self: Box<Self>,
        hook: impl FnMut(&mut dyn LoadFrame, &mut [FrameReading]) -> Result<usize, HwError> + Send + 'static,
    ) -> Box<Self> {
        self.acquire = Some(Box::new(hook));
        self
    }

    /// Report `clock` instead of the wrapped frame's: [`FrameClock::Device`] makes the loop treat
    /// the simulator as a real controller that runs on while the host stalls.
    #[must_use]
    pub fn reporting_clock(mut self: Box<Self>, clock: FrameClock) -> Box<Self> {
        self.clock = Some(clock);
        self
    }

    /// A frame whose commands with index in `commands` each take `delay` longer: one command
    /// (a host stall) or every command from one on (a host that cannot keep up).
    pub fn delaying(
        inner: Box<dyn LoadFrame>,
        commands: std::ops::RangeInclusive<u64>,
        delay: std::time::Duration,
    ) -> Box<Self> {
        Self::wrap(inner, move |c| {
            if commands.contains(&c.index) {
                std::thread::sleep(delay);
            }
            c.command_un
        })
    }

    /// A frame whose actuator jams at command index `at`: from there on it receives the last
    /// command before the jam, so the load stays where it was.
    pub fn jamming(inner: Box<dyn LoadFrame>, at: u64) -> Box<Self> {
        let mut held_un = 0.0;
        Self::wrap(inner, move |c| {
            if c.index < at {
                held_un = c.command_un;
            }
            held_un
        })
    }
}

impl LoadFrame for FaultyFrame {
    fn identify(&mut self) -> Result<DeviceInfo, HwError> {
        self.inner.identify()
    }
    fn prepare(&mut self, limits: &FrameLimits) -> Result<(), HwError> {
        self.inner.prepare(limits)
    }
    fn arm(&mut self, limits: &FrameLimits) -> Result<(), HwError> {
        self.inner.arm(limits)
    }
    fn command(&mut self, command_un: f64, segment: Segment) -> Result<(), HwError> {
        let call = CommandCall { index: self.commands, command_un, segment };
        self.commands += 1;
        let forwarded = (self.hook)(call);
        self.inner.command(forwarded, segment)
    }
    fn acquire(&mut self, out: &mut [FrameReading]) -> Result<usize, HwError> {
        match &mut self.acquire {
            Some(hook) => hook(self.inner.as_mut(), out),
            None => self.inner.acquire(out),
        }
    }
    fn make_safe(&mut self) -> Result<(), HwError> {
        self.inner.make_safe()
    }
    fn ground_truth(&mut self) -> Option<Vec<Event>> {
        self.inner.ground_truth()
    }
    fn clock(&self) -> FrameClock {
        self.clock.unwrap_or_else(|| self.inner.clock())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records what reaches the actuator.
    struct Recorder(std::sync::Arc<std::sync::Mutex<Vec<f64>>>);

    impl LoadFrame for Recorder {
        fn identify(&mut self) -> Result<DeviceInfo, HwError> {
            Err(HwError::Stream { device: "recorder".into(), message: "not a device".into() })
        }
        fn arm(&mut self, _: &FrameLimits) -> Result<(), HwError> {
            Ok(())
        }
        fn command(&mut self, command_un: f64, _: Segment) -> Result<(), HwError> {
            self.0.lock().expect("recorder lock").push(command_un);
            Ok(())
        }
        fn acquire(&mut self, _: &mut [FrameReading]) -> Result<usize, HwError> {
            Ok(0)
        }
        fn make_safe(&mut self) -> Result<(), HwError> {
            Ok(())
        }
    }

    #[test]
    fn a_jammed_actuator_keeps_the_last_command_before_the_jam() {
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut f = FaultyFrame::jamming(Box::new(Recorder(seen.clone())), 2);
        for c in [10.0, 20.0, 30.0, 40.0] {
            f.command(c, Segment::Load).expect("recorded");
        }
        assert_eq!(*seen.lock().expect("lock"), vec![10.0, 20.0, 20.0, 20.0]);
    }

    /// One sample per acquire, numbered from 0.
    struct Counter(u64);

    impl LoadFrame for Counter {
        fn identify(&mut self) -> Result<DeviceInfo, HwError> {
            Err(HwError::Stream { device: "counter".into(), message: "not a device".into() })
        }
        fn arm(&mut self, _: &FrameLimits) -> Result<(), HwError> {
            Ok(())
        }
        fn command(&mut self, _: f64, _: Segment) -> Result<(), HwError> {
            Ok(())
        }
        fn acquire(&mut self, out: &mut [FrameReading]) -> Result<usize, HwError> {
            out[0] = FrameReading { seq: self.0, ..FrameReading::default() };
            self.0 += 1;
            Ok(1)
        }
        fn make_safe(&mut self) -> Result<(), HwError> {
            Ok(())
        }
    }

    #[test]
    fn an_acquire_hook_takes_the_place_of_the_wrapped_acquire() {
        // Holds samples back and releases them two calls at a time: what the caller sees is the
        // hook's, built from the wrapped frame's.
        let mut held = Vec::new();
        let mut f = FaultyFrame::passing(Box::new(Counter(0))).acquiring_through(move |inner, out| {
            let mut one = [FrameReading::default(); 1];
            let n = inner.acquire(&mut one)?;
            held.extend_from_slice(&one[..n]);
            if held.len() < 2 {
                return Ok(0);
            }
            let k = held.len().min(out.len());
            out[..k].copy_from_slice(&held[..k]);
            held.drain(..k);
            Ok(k)
        });
        let mut out = [FrameReading::default(); 4];
        let seen: Vec<Vec<u64>> = (0..4)
            .map(|_| {
                let n = f.acquire(&mut out).expect("acquired");
                out[..n].iter().map(|r| r.seq).collect()
            })
            .collect();
        assert_eq!(seen, [vec![], vec![0, 1], vec![], vec![2, 3]]);
        // Without a hook, acquire goes straight through.
        let mut plain = FaultyFrame::passing(Box::new(Counter(7)));
        assert_eq!((plain.acquire(&mut out).expect("acquired"), out[0].seq), (1, 7));
    }

    #[test]
    fn the_clock_is_the_wrapped_frames_unless_overridden() {
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let f = FaultyFrame::delaying(Box::new(Recorder(seen.clone())), 5..=5, std::time::Duration::ZERO);
        assert_eq!(f.clock(), Recorder(seen.clone()).clock());
        let other = if f.clock() == FrameClock::Device { FrameClock::Tick } else { FrameClock::Device };
        assert_eq!(f.reporting_clock(other).clock(), other);
    }
}
