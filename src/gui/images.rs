//! Images read from run folders (the samples and reconstructions of runs followed from disk):
//! the app decodes them off the UI thread and keeps the last few here; panels only look them
//! up, and ask for the ones missing with [`UiAction::LoadImage`].

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use egui::ColorImage;

use crate::core::runview::SampleRef;
use crate::gui::actions::UiAction;

/// What a decode gave: the pixels, or why not (the file named).
pub type Decoded = Result<Arc<ColorImage>, String>;

/// The images decoded so far (the most recent [`Images::CAPACITY`]) and those under way.
#[derive(Debug, Default)]
pub struct Images {
    done: HashMap<PathBuf, Decoded>,
    /// Oldest first: the first to go when the cache is full.
    order: VecDeque<PathBuf>,
    pending: HashSet<PathBuf>,
}

impl Images {
    /// Images kept; a panel asks again for one that was dropped.
    pub const CAPACITY: usize = 48;

    #[must_use]
    pub fn get(&self, path: &Path) -> Option<&Decoded> {
        self.done.get(path)
    }

    /// Marks `path` as under way; false when it is already, or already decoded.
    pub fn start(&mut self, path: &Path) -> bool {
        if self.done.contains_key(path) {
            return false;
        }
        self.pending.insert(path.to_path_buf())
    }

    /// Keeps a finished decode, dropping the oldest beyond the capacity.
    pub fn finish(&mut self, path: PathBuf, decoded: Decoded) {
        self.pending.remove(&path);
        if self.done.insert(path.clone(), decoded).is_none() {
            self.order.push_back(path);
        }
        while self.order.len() > Self::CAPACITY {
            if let Some(old) = self.order.pop_front() {
                self.done.remove(&old);
            }
        }
    }

    /// Whether any decode is under way.
    #[must_use]
    pub fn busy(&self) -> bool {
        !self.pending.is_empty()
    }
}

/// What a panel can show of an image.
#[derive(Debug)]
pub enum Pixels {
    Ready(ColorImage),
    Failed(String),
    /// Being read: asked for, and shown on a later frame.
    Waiting,
}

/// A sample's pixels: the live RGBA when it came over the channel, else its PNG as decoded by
/// the app (asked for through `out` when it is missing).
pub fn sample_pixels(
    images: &Images,
    run_dir: &str,
    s: &SampleRef,
    out: &mut Vec<UiAction>,
) -> Pixels {
    if !s.rgba.is_empty() && s.rgba.len() == (s.width * s.height * 4) as usize {
        return Pixels::Ready(ColorImage::from_rgba_unmultiplied(
            [s.width as usize, s.height as usize],
            &s.rgba,
        ));
    }
    let path = Path::new(run_dir).join(&s.path);
    match images.get(&path) {
        Some(Ok(img)) => Pixels::Ready((**img).clone()),
        Some(Err(e)) => Pixels::Failed(e.clone()),
        None => {
            out.push(UiAction::LoadImage(path));
            Pixels::Waiting
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_keeps_the_most_recent_and_starts_each_path_once() {
        let mut images = Images::default();
        let p = |i: usize| PathBuf::from(format!("/runs/r/samples/{i}.png"));
        assert!(images.start(&p(0)));
        assert!(!images.start(&p(0)), "already under way");
        assert!(images.busy());
        images.finish(p(0), Err("bad".into()));
        assert!(!images.busy());
        assert!(!images.start(&p(0)), "already decoded");
        for i in 1..=Images::CAPACITY {
            images.finish(
                p(i),
                Ok(Arc::new(ColorImage::new(
                    [1, 1],
                    vec![egui::Color32::BLACK],
                ))),
            );
        }
        assert!(images.get(&p(0)).is_none(), "the oldest went first");
        assert!(images.get(&p(Images::CAPACITY)).is_some());
        assert!(images.start(&p(0)), "asked again once dropped");
    }
}
