//! The status codes of PROTOCOL.md section 5, and a refusal: what every
//! check answers with.

use std::borrow::Cow;

/// The status codes of section 5.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Success,
    Failed,
    MessageError,
    SessionError,
    TypeError,
    BodyError,
    FromError,
    ToError,
    ReceiveError,
}

impl Status {
    pub fn code(self) -> u16 {
        match self {
            Status::Success => 200,
            Status::Failed => 400,
            Status::MessageError => 401,
            Status::SessionError => 402,
            Status::TypeError => 403,
            Status::BodyError => 404,
            Status::FromError => 405,
            Status::ToError => 406,
            Status::ReceiveError => 407,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Status::Success => "SUCCESS",
            Status::Failed => "FAILED",
            Status::MessageError => "MESSAGE_ERROR",
            Status::SessionError => "SESSION_ERROR",
            Status::TypeError => "TYPE_ERROR",
            Status::BodyError => "BODY_ERROR",
            Status::FromError => "FROM_ERROR",
            Status::ToError => "TO_ERROR",
            Status::ReceiveError => "RECEIVE_ERROR",
        }
    }
}

/// A refusal: the status to answer with and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reject {
    pub status: Status,
    pub msg: Cow<'static, str>,
}

impl Reject {
    pub fn new(status: Status, msg: impl Into<Cow<'static, str>>) -> Reject {
        Reject {
            status,
            msg: msg.into(),
        }
    }
}
