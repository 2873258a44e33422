//! The dialog widgets every screen is made of: message and yes/no boxes, menus,
//! checklists and radiolists, input boxes, forms, a file selector, a scrollable text box
//! and the progress gauge. A screen is a [`Dialog`] value (title, text, body, buttons);
//! the same keys work everywhere:
//!
//! * Up/Down, PgUp/PgDn, Home/End: move in a list or scroll a text;
//! * Space: toggle a checklist or radiolist entry;
//! * Tab / Shift-Tab: next / previous part (entry field, list, buttons);
//! * Left/Right: choose a button (move the cursor in an entry field);
//! * Enter: press the highlighted button (in a radiolist, choosing the highlighted
//!   entry first: what is highlighted is what the user gets); Esc: cancel;
//! * a letter in a menu: jump to the next entry starting with it.

use std::path::{Path, PathBuf};

use ratatui::buffer::Buffer;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::widgets::{Block, BorderType, Borders, Clear, Widget};

/// How a dialog ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The button at this index was pressed.
    Button(usize),
    /// Esc.
    Esc,
}

/// Colours of the dialog look.
pub mod theme {
    use super::*;

    /// The screen behind the dialogs.
    pub fn screen() -> Style {
        Style::default().bg(Color::Blue).fg(Color::White)
    }
    /// The background title.
    pub fn backtitle() -> Style {
        screen().fg(Color::White).add_modifier(Modifier::BOLD)
    }
    /// A dialog's body.
    pub fn dialog() -> Style {
        Style::default().bg(Color::Gray).fg(Color::Black)
    }
    /// A dialog's title.
    pub fn title() -> Style {
        dialog().fg(Color::Blue).add_modifier(Modifier::BOLD)
    }
    /// The highlighted entry or button.
    pub fn selected() -> Style {
        Style::default()
            .bg(Color::Blue)
            .fg(Color::White)
            .add_modifier(Modifier::BOLD)
    }
    /// A focused entry field.
    pub fn field() -> Style {
        Style::default().bg(Color::White).fg(Color::Black)
    }
    /// The shadow under a dialog.
    pub fn shadow() -> Style {
        Style::default().bg(Color::Black).fg(Color::DarkGray)
    }
}

/// The buttons of a dialog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Buttons {
    /// Their labels, left to right.
    pub labels: Vec<String>,
    /// The highlighted one.
    pub selected: usize,
}

impl Buttons {
    /// Buttons with these labels, the first highlighted.
    pub fn new(labels: &[&str]) -> Self {
        Buttons {
            labels: labels.iter().map(|s| s.to_string()).collect(),
            selected: 0,
        }
    }

    /// Highlight button `i` first.
    pub fn default_to(mut self, i: usize) -> Self {
        self.selected = i.min(self.labels.len().saturating_sub(1));
        self
    }

    fn cell(label: &str) -> String {
        format!("<{label:^8}>")
    }

    fn width(&self) -> usize {
        self.labels
            .iter()
            .map(|l| Self::cell(l).chars().count() + 2)
            .sum()
    }

    fn render(&self, area: Rect, buf: &mut Buffer, focused: bool) {
        let total = self.width().saturating_sub(2) as u16;
        let mut x = area.x + area.width.saturating_sub(total) / 2;
        for (i, label) in self.labels.iter().enumerate() {
            let text = Self::cell(label);
            let style = if i == self.selected && focused {
                theme::selected()
            } else if i == self.selected {
                theme::dialog().add_modifier(Modifier::BOLD | Modifier::UNDERLINED)
            } else {
                theme::dialog()
            };
            let w = text.chars().count() as u16;
            if x + w > area.x + area.width {
                break;
            }
            buf.set_string(x, area.y, &text, style);
            x += w + 2;
        }
    }

    fn left(&mut self) {
        self.selected = self.selected.saturating_sub(1);
    }

    /// Shift-Tab: the previous button, wrapping round like Tab does.
    fn previous(&mut self) {
        let n = self.labels.len().max(1);
        self.selected = (self.selected + n - 1) % n;
    }

    fn right(&mut self) {
        if self.selected + 1 < self.labels.len() {
            self.selected += 1;
        }
    }
}

/// One line of text being edited.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Field {
    /// The label (forms) or empty (input boxes).
    pub label: String,
    /// The text.
    pub value: String,
    /// Cursor position, in characters.
    pub cursor: usize,
    /// Show `*` instead of the text (tokens).
    pub secret: bool,
}

impl Field {
    /// A field holding `value`, cursor at its end.
    pub fn new(label: &str, value: &str) -> Self {
        Field {
            label: label.to_string(),
            value: value.to_string(),
            cursor: value.chars().count(),
            secret: false,
        }
    }

    /// Hide the text.
    pub fn secret(mut self) -> Self {
        self.secret = true;
        self
    }

    fn byte_at(&self, chars: usize) -> usize {
        self.value
            .char_indices()
            .nth(chars)
            .map(|(i, _)| i)
            .unwrap_or(self.value.len())
    }

    /// Apply an editing key; false if the key is not an editing key.
    fn edit(&mut self, key: KeyEvent) -> bool {
        let len = self.value.chars().count();
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        match key.code {
            KeyCode::Char('u') if ctrl => {
                self.value.clear();
                self.cursor = 0;
            }
            KeyCode::Char('a') if ctrl => self.cursor = 0,
            KeyCode::Char('e') if ctrl => self.cursor = len,
            KeyCode::Char(_) if ctrl => return false,
            KeyCode::Char(c) => {
                let at = self.byte_at(self.cursor);
                self.value.insert(at, c);
                self.cursor += 1;
            }
            KeyCode::Backspace if self.cursor > 0 => {
                let at = self.byte_at(self.cursor - 1);
                self.value.remove(at);
                self.cursor -= 1;
            }
            KeyCode::Delete if self.cursor < len => {
                let at = self.byte_at(self.cursor);
                self.value.remove(at);
            }
            KeyCode::Left => self.cursor = self.cursor.saturating_sub(1),
            KeyCode::Right => self.cursor = (self.cursor + 1).min(len),
            KeyCode::Home => self.cursor = 0,
            KeyCode::End => self.cursor = len,
            KeyCode::Backspace | KeyCode::Delete => {}
            _ => return false,
        }
        true
    }

    fn render(&self, x: u16, y: u16, width: u16, buf: &mut Buffer, focused: bool) {
        let shown: String = if self.secret {
            "*".repeat(self.value.chars().count())
        } else {
            self.value.clone()
        };
        let chars: Vec<char> = shown.chars().collect();
        let w = width as usize;
        // Keep the cursor visible: scroll the text left when it is past the end.
        let start = (self.cursor + 1).saturating_sub(w);
        let visible: String = chars.iter().skip(start).take(w).collect();
        let style = if focused {
            theme::field()
        } else {
            theme::field().fg(Color::DarkGray)
        };
        buf.set_string(x, y, " ".repeat(w), style);
        buf.set_stringn(x, y, &visible, w, style);
        if focused {
            let cx = x + (self.cursor - start) as u16;
            if let Some(cell) = buf.cell_mut((cx, y)) {
                cell.set_style(theme::selected());
            }
        }
    }
}

/// One entry of a directory listing in the file selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// The name (`..` for the parent).
    pub name: String,
    /// Whether it is a directory.
    pub dir: bool,
}

/// What a dialog shows between its text and its buttons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// Nothing: a message box or a yes/no question.
    None,
    /// A menu of (tag, description) entries.
    Menu {
        /// The entries.
        items: Vec<(String, String)>,
        /// The highlighted entry.
        selected: usize,
    },
    /// A checklist (`radio`: exactly one entry on).
    Check {
        /// (tag, description, on).
        items: Vec<(String, String, bool)>,
        /// The highlighted entry.
        selected: usize,
        /// Radiolist behaviour.
        radio: bool,
    },
    /// Entry fields (one: an input box; several: a form).
    Fields {
        /// The fields.
        fields: Vec<Field>,
        /// The field with the cursor; `fields.len()` means the buttons.
        focus: usize,
    },
    /// A scrollable text.
    Text {
        /// Its lines (wrapped when rendered).
        lines: Vec<String>,
        /// First line shown.
        scroll: usize,
    },
    /// A file selector: the entries of `dir` and the chosen path.
    Files {
        /// The directory listed.
        dir: PathBuf,
        /// Its entries, `..` first, directories then files, by name.
        entries: Vec<DirEntry>,
        /// The highlighted entry.
        selected: usize,
        /// The path being chosen.
        path: Field,
        /// 0: the list, 1: the path, 2: the buttons.
        focus: usize,
    },
}

/// A dialog box: what every screen is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dialog {
    /// Shown in the top border.
    pub title: String,
    /// The question or message (may hold newlines; wrapped to the box).
    pub text: String,
    /// What is between the text and the buttons.
    pub body: Body,
    /// The buttons.
    pub buttons: Buttons,
    /// Preferred width (0: from the contents).
    pub width: u16,
    list_offset: usize,
    list_rows: usize,
    scroll_pct: Option<usize>,
    /// A text body wrapped to the box when last drawn (scrolling moves over these).
    wrapped: Vec<String>,
    /// First line of the dialog's own text shown, when it is too long for the screen.
    text_scroll: usize,
    /// How many lines of the dialog's own text did not fit when last drawn.
    text_hidden: usize,
}

impl Dialog {
    fn new(title: &str, text: &str, body: Body, buttons: Buttons) -> Self {
        Dialog {
            title: title.to_string(),
            text: text.to_string(),
            body,
            buttons,
            width: 0,
            list_offset: 0,
            list_rows: 1,
            scroll_pct: None,
            wrapped: Vec::new(),
            text_scroll: 0,
            text_hidden: 0,
        }
    }

    /// A message with an OK button.
    pub fn msgbox(title: &str, text: &str) -> Self {
        Self::new(title, text, Body::None, Buttons::new(&["OK"]))
    }

    /// A message with these buttons.
    pub fn message(title: &str, text: &str, buttons: &[&str]) -> Self {
        Self::new(title, text, Body::None, Buttons::new(buttons))
    }

    /// A Yes/No question; `default_no` highlights No.
    pub fn yesno(title: &str, text: &str, default_no: bool) -> Self {
        Self::new(
            title,
            text,
            Body::None,
            Buttons::new(&["Yes", "No"]).default_to(usize::from(default_no)),
        )
    }

    /// A menu of (tag, description) entries.
    pub fn menu(title: &str, text: &str, items: Vec<(String, String)>, buttons: &[&str]) -> Self {
        Self::new(
            title,
            text,
            Body::Menu { items, selected: 0 },
            Buttons::new(buttons),
        )
    }

    /// A checklist of (tag, description, on) entries.
    pub fn checklist(
        title: &str,
        text: &str,
        items: Vec<(String, String, bool)>,
        buttons: &[&str],
    ) -> Self {
        Self::new(
            title,
            text,
            Body::Check {
                items,
                selected: 0,
                radio: false,
            },
            Buttons::new(buttons),
        )
    }

    /// A radiolist of (tag, description, on) entries; the highlight starts on the one on.
    pub fn radiolist(
        title: &str,
        text: &str,
        items: Vec<(String, String, bool)>,
        buttons: &[&str],
    ) -> Self {
        let selected = items.iter().position(|i| i.2).unwrap_or(0);
        Self::new(
            title,
            text,
            Body::Check {
                items,
                selected,
                radio: true,
            },
            Buttons::new(buttons),
        )
    }

    /// One entry field holding `value`.
    pub fn inputbox(title: &str, text: &str, value: &str, buttons: &[&str]) -> Self {
        Self::form(title, text, vec![Field::new("", value)], buttons)
    }

    /// Several labelled entry fields.
    pub fn form(title: &str, text: &str, fields: Vec<Field>, buttons: &[&str]) -> Self {
        Self::new(
            title,
            text,
            Body::Fields { fields, focus: 0 },
            Buttons::new(buttons),
        )
    }

    /// A scrollable text.
    pub fn textbox(title: &str, text: &str, buttons: &[&str]) -> Self {
        Self::new(
            title,
            "",
            Body::Text {
                lines: text.lines().map(str::to_string).collect(),
                scroll: 0,
            },
            Buttons::new(buttons),
        )
    }

    /// A file selector listing `dir`, with `path` as the initial choice; the cursor
    /// starts in the path field.
    pub fn fselect(title: &str, dir: &Path, path: &str, buttons: &[&str]) -> Self {
        let mut d = Self::new(
            title,
            "",
            Body::Files {
                dir: dir.to_path_buf(),
                entries: list_dir(dir),
                selected: 0,
                path: Field::new("", path),
                focus: 1,
            },
            Buttons::new(buttons),
        );
        d.width = 76;
        d
    }

    /// Use this width when the screen allows.
    pub fn with_width(mut self, width: u16) -> Self {
        self.width = width;
        self
    }

    /// The highlighted menu/list entry.
    pub fn selected(&self) -> usize {
        match &self.body {
            Body::Menu { selected, .. }
            | Body::Check { selected, .. }
            | Body::Files { selected, .. } => *selected,
            _ => 0,
        }
    }

    /// Highlight entry `i` of a menu or list.
    pub fn select(&mut self, i: usize) {
        match &mut self.body {
            Body::Menu { selected, items } => *selected = i.min(items.len().saturating_sub(1)),
            Body::Check {
                selected, items, ..
            } => *selected = i.min(items.len().saturating_sub(1)),
            _ => {}
        }
    }

    /// The tag of the highlighted menu entry.
    pub fn selected_tag(&self) -> Option<&str> {
        match &self.body {
            Body::Menu { items, selected } => items.get(*selected).map(|i| i.0.as_str()),
            Body::Check {
                items, selected, ..
            } => items.get(*selected).map(|i| i.0.as_str()),
            _ => None,
        }
    }

    /// The tags of the entries that are on (checklist, radiolist).
    pub fn checked(&self) -> Vec<String> {
        match &self.body {
            Body::Check { items, .. } => {
                items.iter().filter(|i| i.2).map(|i| i.0.clone()).collect()
            }
            _ => Vec::new(),
        }
    }

    /// The values of the entry fields (the chosen path for a file selector).
    pub fn values(&self) -> Vec<String> {
        match &self.body {
            Body::Fields { fields, .. } => fields.iter().map(|f| f.value.clone()).collect(),
            Body::Files { path, .. } => vec![path.value.clone()],
            _ => Vec::new(),
        }
    }

    /// The value of the first entry field.
    pub fn value(&self) -> String {
        self.values().into_iter().next().unwrap_or_default()
    }

    /// The directory a file selector lists.
    pub fn dir(&self) -> Option<&Path> {
        match &self.body {
            Body::Files { dir, .. } => Some(dir),
            _ => None,
        }
    }

    /// List `dir` in a file selector, with `path` in its field.
    pub fn chdir(&mut self, new_dir: &Path, new_path: &str) {
        if let Body::Files {
            dir,
            entries,
            selected,
            path,
            ..
        } = &mut self.body
        {
            *dir = new_dir.to_path_buf();
            *entries = list_dir(new_dir);
            *selected = 0;
            *path = Field::new("", new_path);
            self.list_offset = 0;
        }
    }

    /// Handle one key; `Some` when the dialog is over.
    pub fn handle(&mut self, key: KeyEvent) -> Option<Outcome> {
        let shift_tab = key.code == KeyCode::BackTab;
        if key.code == KeyCode::Esc {
            return Some(Outcome::Esc);
        }
        let rows = self.list_rows.max(1);
        match &mut self.body {
            Body::None => {
                // A message too long for the screen scrolls.
                if self.text_hidden > 0 {
                    let max = self.text_hidden;
                    let page = rows;
                    let pos = &mut self.text_scroll;
                    match key.code {
                        KeyCode::Up => *pos = pos.saturating_sub(1),
                        KeyCode::Down => *pos = (*pos + 1).min(max),
                        KeyCode::PageUp => *pos = pos.saturating_sub(page),
                        KeyCode::PageDown | KeyCode::Char(' ') => *pos = (*pos + page).min(max),
                        KeyCode::Home => *pos = 0,
                        KeyCode::End => *pos = max,
                        _ => {}
                    }
                    if matches!(
                        key.code,
                        KeyCode::Up
                            | KeyCode::Down
                            | KeyCode::PageUp
                            | KeyCode::PageDown
                            | KeyCode::Home
                            | KeyCode::End
                            | KeyCode::Char(' ')
                    ) {
                        return None;
                    }
                }
            }
            Body::Menu { items, selected } => {
                if move_in_list(key.code, selected, items.len(), rows) {
                    return None;
                }
                if let KeyCode::Char(c) = key.code {
                    if !key.modifiers.contains(KeyModifiers::CONTROL) && c != ' ' {
                        jump_to_letter(items.iter().map(|i| i.0.as_str()), selected, c);
                        return None;
                    }
                }
            }
            Body::Check {
                items,
                selected,
                radio,
            } => {
                if move_in_list(key.code, selected, items.len(), rows) {
                    return None;
                }
                if key.code == KeyCode::Char(' ') && !items.is_empty() {
                    if *radio {
                        for (i, item) in items.iter_mut().enumerate() {
                            item.2 = i == *selected;
                        }
                    } else {
                        items[*selected].2 = !items[*selected].2;
                    }
                    return None;
                }
            }
            Body::Text { lines, scroll } => {
                // Scrolling moves over the lines as wrapped on the screen.
                let total = if self.wrapped.is_empty() {
                    lines.len()
                } else {
                    self.wrapped.len()
                };
                let max = total.saturating_sub(rows);
                let mut pos = (*scroll).min(max);
                match key.code {
                    KeyCode::Up => pos = pos.saturating_sub(1),
                    KeyCode::Down => pos = (pos + 1).min(max),
                    KeyCode::PageUp => pos = pos.saturating_sub(rows),
                    KeyCode::PageDown | KeyCode::Char(' ') => pos = (pos + rows).min(max),
                    KeyCode::Home => pos = 0,
                    KeyCode::End => pos = max,
                    _ => {}
                }
                if pos != *scroll || matches!(key.code, KeyCode::Up | KeyCode::Down) {
                    *scroll = pos;
                    return None;
                }
            }
            Body::Fields { fields, focus } => {
                let n = fields.len();
                match key.code {
                    KeyCode::Tab => {
                        *focus = (*focus + 1) % (n + 1);
                        return None;
                    }
                    _ if shift_tab => {
                        *focus = (*focus + n) % (n + 1);
                        return None;
                    }
                    KeyCode::Down if *focus < n => {
                        *focus = (*focus + 1).min(n);
                        return None;
                    }
                    KeyCode::Up if *focus > 0 => {
                        *focus -= 1;
                        return None;
                    }
                    KeyCode::Enter => {}
                    _ if *focus < n => {
                        fields[*focus].edit(key);
                        return None;
                    }
                    _ => {}
                }
            }
            Body::Files {
                dir,
                entries,
                selected,
                path,
                focus,
            } => match key.code {
                KeyCode::Tab => {
                    *focus = (*focus + 1) % 3;
                    return None;
                }
                _ if shift_tab => {
                    *focus = (*focus + 2) % 3;
                    return None;
                }
                KeyCode::Enter | KeyCode::Char(' ') if *focus == 0 => {
                    if let Some(e) = entries.get(*selected).cloned() {
                        let target = if e.name == ".." {
                            dir.parent().unwrap_or(dir).to_path_buf()
                        } else {
                            dir.join(&e.name)
                        };
                        if e.dir {
                            *entries = list_dir(&target);
                            *path = Field::new(
                                "",
                                &format!("{}/", target.display()).replace("//", "/"),
                            );
                            *dir = target;
                            *selected = 0;
                            self.list_offset = 0;
                        } else {
                            *path = Field::new("", &target.display().to_string());
                            *focus = 1;
                        }
                    }
                    return None;
                }
                _ if *focus == 0 => {
                    move_in_list(key.code, selected, entries.len(), rows);
                    return None;
                }
                KeyCode::Enter => {}
                _ if *focus == 1 => {
                    path.edit(key);
                    return None;
                }
                _ => {}
            },
        }
        match key.code {
            KeyCode::Left => self.buttons.left(),
            KeyCode::Right => self.buttons.right(),
            KeyCode::Tab => {
                self.buttons.selected =
                    (self.buttons.selected + 1) % self.buttons.labels.len().max(1)
            }
            KeyCode::BackTab => self.buttons.previous(),
            KeyCode::Enter => {
                // What the user sees highlighted in a radiolist is what they get.
                if let Body::Check {
                    items,
                    selected,
                    radio: true,
                } = &mut self.body
                {
                    if *selected < items.len() {
                        for (i, item) in items.iter_mut().enumerate() {
                            item.2 = i == *selected;
                        }
                    }
                }
                return Some(Outcome::Button(self.buttons.selected));
            }
            _ => {}
        }
        None
    }

    fn buttons_focused(&self) -> bool {
        match &self.body {
            Body::Fields { fields, focus } => *focus >= fields.len(),
            Body::Files { focus, .. } => *focus == 2,
            _ => true,
        }
    }

    /// Rows the body wants (lists: their length).
    fn body_rows(&self) -> usize {
        match &self.body {
            Body::None => 0,
            Body::Menu { items, .. } => items.len(),
            Body::Check { items, .. } => items.len(),
            Body::Fields { fields, .. } => fields.len() * 2 - 1,
            Body::Text { .. } => self.wrapped.len().max(1),
            Body::Files { entries, .. } => entries.len().max(8) + 2,
        }
    }

    fn wanted_width(&self) -> usize {
        let text = self
            .text
            .lines()
            .map(|l| l.chars().count())
            .max()
            .unwrap_or(0);
        let body = match &self.body {
            Body::None => 0,
            Body::Menu { items, .. } => {
                let tag = items.iter().map(|i| i.0.chars().count()).max().unwrap_or(0);
                let desc = items.iter().map(|i| i.1.chars().count()).max().unwrap_or(0);
                tag + desc + 8
            }
            Body::Check { items, .. } => {
                let tag = items.iter().map(|i| i.0.chars().count()).max().unwrap_or(0);
                let desc = items.iter().map(|i| i.1.chars().count()).max().unwrap_or(0);
                tag + desc + 12
            }
            Body::Fields { fields, .. } => {
                let label = fields
                    .iter()
                    .map(|f| f.label.chars().count())
                    .max()
                    .unwrap_or(0);
                label + 40
            }
            Body::Text { lines, .. } => {
                lines.iter().map(|l| l.chars().count()).max().unwrap_or(0) + 2
            }
            Body::Files { .. } => 70,
        };
        let buttons = self.buttons.width() + 2;
        let title = self.title.chars().count() + 6;
        text.min(72).max(body).max(buttons).max(title).max(40) + 4
    }

    /// Draw the dialog centred in `area` (the screen below the background title).
    pub fn render(&mut self, area: Rect, buf: &mut Buffer) {
        if too_small(area, buf) {
            return;
        }
        let max_w = area.width.saturating_sub(4).max(10);
        let want = if self.width > 0 {
            self.width as usize
        } else {
            self.wanted_width()
        };
        let w = (want as u16).min(max_w);
        let inner_w = w.saturating_sub(4) as usize;
        let text = wrap(&self.text, inner_w.max(1));
        let max_h = area.height.saturating_sub(2).max(6);
        // borders 2, buttons 1, separator line 1, blank after text
        let fixed = 4 + usize::from(!text.is_empty()) * (text.len() + 1);
        if let Body::Text { lines, .. } = &self.body {
            self.wrapped = lines.iter().flat_map(|l| wrap_line(l, inner_w)).collect();
        }
        let mut body_rows = self.body_rows();
        let has_body = !matches!(self.body, Body::None);
        if has_body && matches!(self.body, Body::Menu { .. } | Body::Check { .. }) {
            body_rows += 2; // the list's own border
        }
        let mut text_rows = text.len();
        if fixed + body_rows > max_h as usize {
            let room = (max_h as usize).saturating_sub(fixed);
            if has_body {
                body_rows = room.max(3);
            }
            if fixed + body_rows > max_h as usize {
                // Text too long for the screen: cut it.
                text_rows = text_rows.saturating_sub(fixed + body_rows - max_h as usize);
            }
        }
        let h = (4 + usize::from(text_rows > 0) * (text_rows + 1) + body_rows).min(max_h as usize)
            as u16;
        let x = area.x + (area.width.saturating_sub(w)) / 2;
        let y = area.y + (area.height.saturating_sub(h)) / 2;
        let rect = Rect::new(x, y, w, h);

        // Shadow, then the box.
        let shadow = Rect::new(x + 2, y + 1, w, h).intersection(area);
        buf.set_style(shadow, theme::shadow());
        Clear.render(rect, buf);
        let block = Block::default()
            .borders(Borders::ALL)
            .border_type(BorderType::Plain)
            .style(theme::dialog())
            .title(
                ratatui::text::Line::styled(format!(" {} ", self.title), theme::title()).centered(),
            );
        let inner = block.inner(rect);
        block.render(rect, buf);

        // What does not fit scrolls (a message box) or is cut (above a list).
        self.text_hidden = if has_body {
            0
        } else {
            text.len().saturating_sub(text_rows)
        };
        self.text_scroll = self.text_scroll.min(self.text_hidden);
        if !has_body {
            self.list_rows = text_rows.max(1);
            self.scroll_pct =
                (self.text_hidden > 0).then(|| self.text_scroll * 100 / self.text_hidden);
        }
        let mut row = inner.y;
        for line in text.iter().skip(self.text_scroll).take(text_rows) {
            buf.set_stringn(inner.x + 1, row, line, inner_w, theme::dialog());
            row += 1;
        }
        if text_rows > 0 {
            row += 1;
        }
        let body_area = Rect::new(
            inner.x + 1,
            row,
            inner.width.saturating_sub(2),
            (inner.y + inner.height)
                .saturating_sub(2)
                .saturating_sub(row),
        );
        self.render_body(body_area, buf);
        // Separator and buttons.
        let sep_y = inner.y + inner.height.saturating_sub(2);
        buf.set_string(
            rect.x,
            sep_y,
            format!("├{}┤", "─".repeat(w.saturating_sub(2) as usize)),
            theme::dialog(),
        );
        if let Some(pct) = self.scroll_pct {
            let tag = format!(" {pct}% ");
            let tx = rect.x + w.saturating_sub(tag.len() as u16 + 2);
            buf.set_string(tx, sep_y, tag, theme::title());
        }
        let focused = self.buttons_focused();
        self.buttons.render(
            Rect::new(
                inner.x,
                inner.y + inner.height.saturating_sub(1),
                inner.width,
                1,
            ),
            buf,
            focused,
        );
    }

    fn render_body(&mut self, area: Rect, buf: &mut Buffer) {
        if area.height == 0 {
            return;
        }
        match &self.body {
            Body::None => {}
            Body::Menu { items, selected } => {
                let rows: Vec<(String, String, Option<bool>)> = items
                    .iter()
                    .map(|(t, d)| (t.clone(), d.clone(), None))
                    .collect();
                let sel = *selected;
                self.render_list(area, buf, &rows, sel, false);
            }
            Body::Check {
                items,
                selected,
                radio,
            } => {
                let rows: Vec<(String, String, Option<bool>)> = items
                    .iter()
                    .map(|(t, d, on)| (t.clone(), d.clone(), Some(*on)))
                    .collect();
                let (sel, radio) = (*selected, *radio);
                self.render_list(area, buf, &rows, sel, radio);
            }
            Body::Fields { fields, focus } => {
                let label_w = fields
                    .iter()
                    .map(|f| f.label.chars().count())
                    .max()
                    .unwrap_or(0);
                let label_w = if label_w > 0 { label_w + 2 } else { 0 } as u16;
                for (i, f) in fields.iter().enumerate() {
                    let y = area.y + (i as u16) * 2;
                    if y >= area.y + area.height {
                        break;
                    }
                    buf.set_stringn(area.x, y, &f.label, label_w as usize, theme::dialog());
                    f.render(
                        area.x + label_w,
                        y,
                        area.width.saturating_sub(label_w),
                        buf,
                        *focus == i,
                    );
                }
            }
            Body::Text { scroll, .. } => {
                let lines = &self.wrapped;
                self.list_rows = area.height as usize;
                let max = lines.len().saturating_sub(area.height as usize);
                let start = (*scroll).min(max);
                for (i, line) in lines
                    .iter()
                    .skip(start)
                    .take(area.height as usize)
                    .enumerate()
                {
                    buf.set_stringn(
                        area.x,
                        area.y + i as u16,
                        line,
                        area.width as usize,
                        theme::dialog(),
                    );
                }
                self.scroll_pct = (lines.len() > area.height as usize)
                    .then(|| (start * 100).checked_div(max).unwrap_or(100));
            }
            Body::Files {
                dir,
                entries,
                selected,
                path,
                focus,
            } => {
                let (sel, focus) = (*selected, *focus);
                let path = path.clone();
                let header = format!("Directory: {}", dir.display());
                buf.set_stringn(
                    area.x,
                    area.y,
                    &header,
                    area.width as usize,
                    theme::dialog(),
                );
                let rows: Vec<(String, String, Option<bool>)> = entries
                    .iter()
                    .map(|e| {
                        let name = if e.dir {
                            format!("{}/", e.name)
                        } else {
                            e.name.clone()
                        };
                        (name, String::new(), None)
                    })
                    .collect();
                let list_area = Rect::new(
                    area.x,
                    area.y + 1,
                    area.width,
                    area.height.saturating_sub(3),
                );
                self.render_list_focus(list_area, buf, &rows, sel, false, focus == 0);
                let py = area.y + area.height.saturating_sub(1);
                buf.set_string(area.x, py, "Path:", theme::dialog());
                path.render(
                    area.x + 6,
                    py,
                    area.width.saturating_sub(6),
                    buf,
                    focus == 1,
                );
            }
        }
    }

    fn render_list(
        &mut self,
        area: Rect,
        buf: &mut Buffer,
        rows: &[(String, String, Option<bool>)],
        selected: usize,
        radio: bool,
    ) {
        self.render_list_focus(area, buf, rows, selected, radio, true)
    }

    fn render_list_focus(
        &mut self,
        area: Rect,
        buf: &mut Buffer,
        rows: &[(String, String, Option<bool>)],
        selected: usize,
        radio: bool,
        focused: bool,
    ) {
        if area.height < 3 {
            return;
        }
        let block = Block::default()
            .borders(Borders::ALL)
            .style(theme::dialog());
        let inner = block.inner(area);
        block.render(area, buf);
        let visible = inner.height as usize;
        self.list_rows = visible;
        if selected < self.list_offset {
            self.list_offset = selected;
        } else if selected >= self.list_offset + visible {
            self.list_offset = selected + 1 - visible;
        }
        self.list_offset = self.list_offset.min(rows.len().saturating_sub(visible));
        let tag_w = rows.iter().map(|r| r.0.chars().count()).max().unwrap_or(0);
        for (i, (tag, desc, on)) in rows.iter().enumerate().skip(self.list_offset).take(visible) {
            let y = inner.y + (i - self.list_offset) as u16;
            let mark = match on {
                Some(true) if radio => "(*) ",
                Some(false) if radio => "( ) ",
                Some(true) => "[*] ",
                Some(false) => "[ ] ",
                None => "",
            };
            let line = if desc.is_empty() {
                format!(" {mark}{tag}")
            } else {
                format!(" {mark}{tag:<tag_w$}  {desc}")
            };
            let style = if i == selected && focused {
                theme::selected()
            } else {
                theme::dialog()
            };
            if i == selected {
                buf.set_string(inner.x, y, " ".repeat(inner.width as usize), style);
            }
            buf.set_string(inner.x, y, ellipsize(&line, inner.width as usize), style);
        }
        if self.list_offset > 0 {
            buf.set_string(
                inner.x + inner.width.saturating_sub(4),
                area.y,
                "(-)",
                theme::title(),
            );
        }
        if self.list_offset + visible < rows.len() {
            buf.set_string(
                inner.x + inner.width.saturating_sub(4),
                area.y + area.height - 1,
                "(+)",
                theme::title(),
            );
        }
        // Say what Space does (Enter confirms the dialog).
        if rows.iter().any(|r| r.2.is_some()) {
            let hint = if radio {
                " Space: choose "
            } else {
                " Space: check/uncheck "
            };
            if (hint.len() as u16) + 6 < inner.width {
                buf.set_string(inner.x + 1, area.y + area.height - 1, hint, theme::dialog());
            }
        }
    }
}

fn move_in_list(code: KeyCode, selected: &mut usize, len: usize, page: usize) -> bool {
    if len == 0 {
        return matches!(code, KeyCode::Up | KeyCode::Down);
    }
    match code {
        KeyCode::Up => *selected = selected.saturating_sub(1),
        KeyCode::Down => *selected = (*selected + 1).min(len - 1),
        KeyCode::PageUp => *selected = selected.saturating_sub(page),
        KeyCode::PageDown => *selected = (*selected + page).min(len - 1),
        KeyCode::Home => *selected = 0,
        KeyCode::End => *selected = len - 1,
        _ => return false,
    }
    true
}

fn jump_to_letter<'a>(tags: impl Iterator<Item = &'a str>, selected: &mut usize, c: char) {
    let tags: Vec<&str> = tags.collect();
    let n = tags.len();
    let c = c.to_ascii_lowercase();
    for step in 1..=n {
        let i = (*selected + step) % n;
        if tags[i].chars().next().map(|f| f.to_ascii_lowercase()) == Some(c) {
            *selected = i;
            return;
        }
    }
}

/// The entries of `dir`: `..` first (unless `dir` is `/`), then directories, then
/// files, each by name; hidden entries included. Unreadable directories list only `..`.
pub fn list_dir(dir: &Path) -> Vec<DirEntry> {
    let mut dirs = Vec::new();
    let mut files = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            // Follow symlinks so that a link to a directory navigates.
            if e.path().is_dir() {
                dirs.push(name);
            } else {
                files.push(name);
            }
        }
    }
    dirs.sort();
    files.sort();
    let mut out = Vec::new();
    if dir.parent().is_some() {
        out.push(DirEntry {
            name: "..".into(),
            dir: true,
        });
    }
    out.extend(dirs.into_iter().map(|name| DirEntry { name, dir: true }));
    out.extend(files.into_iter().map(|name| DirEntry { name, dir: false }));
    out
}

/// `text` in at most `width` columns: cut with an ellipsis when longer.
pub fn ellipsize(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    if width == 0 {
        return String::new();
    }
    let mut out: String = text.chars().take(width - 1).collect();
    out.push('…');
    out
}

/// One line of a text body wrapped to `width` (an empty line stays one empty line).
fn wrap_line(line: &str, width: usize) -> Vec<String> {
    let mut out = wrap(line, width);
    if out.is_empty() {
        out.push(String::new());
    }
    out
}

/// Word-wrap `text` to `width` columns, keeping its line breaks; words longer than a
/// line are split.
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    let mut out = Vec::new();
    if text.is_empty() {
        return out;
    }
    for para in text.split('\n') {
        // A line that fits is kept as it is (the spacing of a table, say).
        let para = para.trim_end();
        if para.chars().count() <= width {
            out.push(para.to_string());
            continue;
        }
        let indent: String = para.chars().take_while(|c| *c == ' ').collect();
        let mut line = String::new();
        let mut len = 0;
        for word in para.split_whitespace() {
            let mut word: Vec<char> = word.chars().collect();
            loop {
                let wl = word.len();
                let prefix = if len == 0 {
                    indent.chars().count()
                } else {
                    len + 1
                };
                if prefix + wl <= width {
                    if len == 0 {
                        line.push_str(&indent);
                        len = indent.chars().count();
                    } else {
                        line.push(' ');
                        len += 1;
                    }
                    line.extend(word.iter());
                    len += wl;
                    break;
                }
                if len > 0 {
                    out.push(std::mem::take(&mut line));
                    len = 0;
                    continue;
                }
                // A word longer than the line.
                let cut = width.saturating_sub(indent.chars().count()).max(1);
                let rest = word.split_off(cut.min(word.len()));
                out.push(format!("{indent}{}", word.iter().collect::<String>()));
                word = rest;
                if word.is_empty() {
                    break;
                }
            }
        }
        out.push(line);
    }
    out
}

/// Fill the screen background and draw the background title on the first line with a
/// rule under it.
pub fn render_screen(backtitle: &str, area: Rect, buf: &mut Buffer) -> Rect {
    buf.set_style(area, theme::screen());
    for y in area.y..area.y + area.height {
        buf.set_string(area.x, y, " ".repeat(area.width as usize), theme::screen());
    }
    if area.height < 3 {
        return area;
    }
    buf.set_string(
        area.x + 1,
        area.y,
        ellipsize(backtitle, area.width.saturating_sub(2) as usize),
        theme::backtitle(),
    );
    buf.set_string(
        area.x + 1,
        area.y + 1,
        "─".repeat(area.width.saturating_sub(2) as usize),
        theme::screen(),
    );
    Rect::new(area.x, area.y + 2, area.width, area.height - 2)
}

/// The state of one progress counter, as the progress screen shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gauge {
    /// What is being done.
    pub title: String,
    /// Done so far.
    pub position: u64,
    /// Total.
    pub total: u64,
    /// Whether the units are bytes (shown in MiB).
    pub bytes: bool,
}

/// The progress screen: a box titled `title` with the last lines of the log, the
/// current gauge and a Cancel button (`cancelling` once pressed).
pub fn render_progress(
    title: &str,
    log: &[String],
    gauge: Option<&Gauge>,
    cancelling: bool,
    area: Rect,
    buf: &mut Buffer,
) {
    if too_small(area, buf) {
        return;
    }
    let w = area.width.saturating_sub(4).clamp(20, 76);
    let h = area.height.saturating_sub(2).clamp(8, 16);
    let x = area.x + (area.width - w) / 2;
    let y = area.y + (area.height.saturating_sub(h)) / 2;
    let rect = Rect::new(x, y, w, h);
    let shadow = Rect::new(x + 2, y + 1, w, h).intersection(area);
    buf.set_style(shadow, theme::shadow());
    Clear.render(rect, buf);
    let block = Block::default()
        .borders(Borders::ALL)
        .style(theme::dialog())
        .title(ratatui::text::Line::styled(format!(" {title} "), theme::title()).centered());
    let inner = block.inner(rect);
    block.render(rect, buf);
    let inner_w = inner.width.saturating_sub(2) as usize;
    let log_rows = inner.height.saturating_sub(5) as usize;
    let mut wrapped: Vec<String> = Vec::new();
    for l in log {
        wrapped.extend(wrap(l, inner_w));
    }
    let start = wrapped.len().saturating_sub(log_rows);
    for (i, line) in wrapped[start..].iter().enumerate() {
        buf.set_stringn(
            inner.x + 1,
            inner.y + i as u16,
            line,
            inner_w,
            theme::dialog(),
        );
    }
    let gy = inner.y + inner.height.saturating_sub(4);
    if let Some(g) = gauge {
        let pct = (g.position.min(g.total) * 100)
            .checked_div(g.total)
            .unwrap_or(0) as usize;
        let amount = if g.bytes {
            format!("{}/{} MiB", g.position >> 20, g.total.div_ceil(1 << 20))
        } else {
            format!("{}/{}", g.position, g.total)
        };
        // The figures are what the user watches: the label gives way to them.
        let figures = format!(" ({amount})");
        let label = ellipsize(&g.title, inner_w.saturating_sub(figures.chars().count()));
        buf.set_stringn(
            inner.x + 1,
            gy,
            format!("{label}{figures}"),
            inner_w,
            theme::dialog(),
        );
        let bar_w = inner_w;
        let filled = bar_w * pct / 100;
        let label = format!("{pct}%");
        let mut bar = format!("{label:^bar_w$}");
        bar.truncate(bar_w);
        for (i, ch) in bar.chars().enumerate() {
            let style = if i < filled {
                theme::selected()
            } else {
                theme::field()
            };
            buf.set_string(inner.x + 1 + i as u16, gy + 1, ch.to_string(), style);
        }
    }
    let by = inner.y + inner.height.saturating_sub(1);
    buf.set_string(
        rect.x,
        by - 1,
        format!("├{}┤", "─".repeat(w.saturating_sub(2) as usize)),
        theme::dialog(),
    );
    let buttons = Buttons::new(&[if cancelling {
        "Cancelling..."
    } else {
        "Cancel"
    }]);
    buttons.render(Rect::new(inner.x, by, inner.width, 1), buf, !cancelling);
}

/// Dialogs need 24x8 cells; a smaller screen says so instead.
fn too_small(area: Rect, buf: &mut Buffer) -> bool {
    if area.width >= 24 && area.height >= 8 {
        return false;
    }
    let msg = "Terminal too small";
    let area = area.intersection(buf.area);
    if area.height > 0 {
        buf.set_stringn(area.x, area.y, msg, area.width as usize, theme::backtitle());
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    #[test]
    fn wrap_keeps_newlines_and_splits_long_words() {
        assert_eq!(wrap("a b c\n\nd", 3), vec!["a b", "c", "", "d"]);
        assert_eq!(wrap("abcdefg", 3), vec!["abc", "def", "g"]);
        assert_eq!(wrap("  * one two", 8), vec!["  * one", "  two"]);
    }

    #[test]
    fn checklist_toggles_and_radiolist_keeps_one() {
        let mut d = Dialog::checklist(
            "t",
            "",
            vec![
                ("a".into(), "".into(), true),
                ("b".into(), "".into(), false),
            ],
            &["OK"],
        );
        d.handle(key(KeyCode::Down));
        d.handle(key(KeyCode::Char(' ')));
        assert_eq!(d.checked(), vec!["a", "b"]);
        let mut r = Dialog::radiolist(
            "t",
            "",
            vec![
                ("a".into(), "".into(), true),
                ("b".into(), "".into(), false),
            ],
            &["OK"],
        );
        r.handle(key(KeyCode::Down));
        r.handle(key(KeyCode::Char(' ')));
        assert_eq!(r.checked(), vec!["b"]);
        assert_eq!(r.handle(key(KeyCode::Enter)), Some(Outcome::Button(0)));
    }

    #[test]
    fn fields_edit_and_buttons_move() {
        let mut d = Dialog::inputbox("t", "", "abc", &["OK", "Cancel"]);
        d.handle(key(KeyCode::Backspace));
        d.handle(key(KeyCode::Left));
        d.handle(key(KeyCode::Char('X')));
        assert_eq!(d.value(), "aXb");
        d.handle(KeyEvent::new(KeyCode::Char('u'), KeyModifiers::CONTROL));
        assert_eq!(d.value(), "");
        d.handle(key(KeyCode::Tab));
        d.handle(key(KeyCode::Right));
        assert_eq!(d.handle(key(KeyCode::Enter)), Some(Outcome::Button(1)));
        assert_eq!(d.handle(key(KeyCode::Esc)), Some(Outcome::Esc));
    }

    #[test]
    fn enter_chooses_the_highlighted_radio_entry() {
        let items = vec![
            ("Private".to_string(), String::new(), true),
            ("Public".to_string(), String::new(), false),
        ];
        let mut d = Dialog::radiolist("t", "", items, &["Next", "Back"]);
        assert_eq!(d.handle(key(KeyCode::Down)), None);
        assert_eq!(d.checked(), vec!["Private".to_string()]);
        assert_eq!(d.handle(key(KeyCode::Enter)), Some(Outcome::Button(0)));
        assert_eq!(d.checked(), vec!["Public".to_string()]);
    }

    #[test]
    fn shift_tab_wraps_round_the_buttons() {
        let mut d = Dialog::menu(
            "t",
            "",
            vec![("a".into(), "b".into())],
            &["OK", "Back", "Help"],
        );
        d.handle(key(KeyCode::BackTab));
        assert_eq!(d.buttons.selected, 2);
        d.handle(key(KeyCode::Tab));
        assert_eq!(d.buttons.selected, 0);
    }

    #[test]
    fn menu_letters_jump() {
        let items = ["Customize", "Register", "Extract", "Reset"]
            .iter()
            .map(|s| (s.to_string(), String::new()))
            .collect();
        let mut d = Dialog::menu("t", "", items, &["OK"]);
        d.handle(key(KeyCode::Char('r')));
        assert_eq!(d.selected_tag(), Some("Register"));
        d.handle(key(KeyCode::Char('r')));
        assert_eq!(d.selected_tag(), Some("Reset"));
    }
}
