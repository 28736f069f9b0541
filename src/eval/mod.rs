//! `tag-space eval`: how well the proposed labels agree with the labels people already put on
//! the space's pages. [`select`] picks the pages, [`source::Selected`] feeds them to the
//! pipeline (dry run), [`score`] is the arithmetic, [`report`] shows it.

pub mod report;
pub mod score;
pub mod select;
pub mod source;
