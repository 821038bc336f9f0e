//! Offline statistics of NanoECR runs: truncated power-law fits, waiting times, p-n balance, pop-in correlation, scoring, plots and reports.
