//! `tag-space eval`: how well the proposed labels agree with the labels people already put on
//! the space's pages. [`score`] is the arithmetic.

pub mod score;
